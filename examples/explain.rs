//! The main job: explain photos with a zoo model and write heatmap panels.
//!
//! With no arguments it explains the bundled photo of Chelsea the cat with the bundled ImageNet
//! SqueezeNet 1.1 using RAP, prints the top-5 classes and the relevance sum, and writes a panel
//! (photo | RAP | LRP α1β0) as a PNG.
//!
//! ```sh
//! cargo run --release --example explain
//! cargo run --release --example explain -- --model resnet50 --weights resnet50.pth \
//!     --image photos/ --rule lrp-eps --out heatmaps
//! # A PyTorch export instead of a zoo model:
//! cargo run --release --features onnx --example explain -- --onnx model.onnx --image photo.jpg
//! ```

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::imaging::load_imagenet;
use rap_attrib::kit::{sample_sums, to_vec};
use rap_attrib::zoo::{Architecture, RULE_NAMES, ZooModel};
use rap_attrib::{Composite, Explain, Explainer, Node, Target, Tracer, viz};
use std::path::PathBuf;

#[macro_use]
mod common;

use common::assets;

/// Explain image classifications with RAP or an LRP rule and write heatmap panels.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Architecture: vgg16, resnet18, resnet50 or squeezenet1_1.
    #[arg(long, default_value = "squeezenet1_1")]
    model: String,
    /// Weights: a torchvision .pth/.pt checkpoint or a .safetensors file in torchvision naming
    /// [default: the bundled SqueezeNet 1.1 ImageNet weights].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// An ONNX model (a PyTorch export taking ImageNet-normalised photos) instead of a zoo
    /// model; needs a build with `--features onnx`.
    #[arg(long, conflicts_with_all = ["model", "weights"])]
    onnx: Option<PathBuf>,
    /// Image files (PNG/JPEG) or directories of them [default: the bundled chelsea.png].
    #[arg(long, num_args = 1..)]
    image: Vec<PathBuf>,
    /// Rule set for the main heatmap: rap, lrp-a1b0, lrp-a2b1, lrp-eps, or Zennit's
    /// epsilon-plus, epsilon-plus-flat, epsilon-gamma-box, epsilon-alpha2-beta1,
    /// epsilon-alpha2-beta1-flat.
    #[arg(long, default_value = "rap")]
    rule: String,
    /// Second rule set shown next to it in the panel ("none" for no second heatmap).
    #[arg(long, default_value = "lrp-a1b0")]
    compare: String,
    /// Class index to explain [default: the predicted class].
    #[arg(long)]
    target: Option<usize>,
    /// Output folder for the panels.
    #[arg(long, default_value = "target/explain")]
    out: PathBuf,
    /// Device: cpu, or wgpu when built with the `wgpu` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Class names, one per line [default: the bundled ImageNet names for 1000-class models].
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Side of the square the photo is resized to (Pillow-exact bilinear, no crop) [default:
    /// 224, or the ONNX model's declared input side].
    #[arg(long)]
    size: Option<u32>,
    /// The most memory one explanation may hold, in GiB [default: ¾ of the memory available
    /// when it starts]; a call that would need more stops with an error before it allocates.
    #[arg(long)]
    max_memory: Option<f64>,
}

/// A zoo model or an ONNX one.
enum Model {
    Zoo(Box<ZooModel>),
    #[cfg(feature = "onnx")]
    Onnx(Box<rap_attrib::onnx::OnnxModel>),
}

impl Explain for Model {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> rap_attrib::Result<Node> {
        match self {
            Model::Zoo(m) => m.trace(t, x),
            #[cfg(feature = "onnx")]
            Model::Onnx(m) => m.trace(t, x),
        }
    }
}

impl Model {
    fn composite(&self, rule: &str) -> Result<Composite, String> {
        match self {
            Model::Zoo(m) => m.composite(rule),
            #[cfg(feature = "onnx")]
            Model::Onnx(_) => rap_attrib::zoo::rule_preset(rule),
        }
        .map_err(|e| e.to_string())
    }

    /// The side the photo is resized to when `--size` is not given.
    fn side(&self) -> u32 {
        match self {
            Model::Zoo(_) => 224,
            #[cfg(feature = "onnx")]
            Model::Onnx(m) => {
                m.input_shape().get(2).copied().flatten().and_then(|s| u32::try_from(s).ok()).unwrap_or(224)
            }
        }
    }
}

fn load_model(args: &Args, device: &rap_attrib::burn::tensor::Device) -> Result<Model, String> {
    if let Some(path) = &args.onnx {
        #[cfg(feature = "onnx")]
        return rap_attrib::onnx::OnnxModel::from_file(path, device)
            .map(|m| Model::Onnx(Box::new(m)))
            .map_err(|e| e.to_string());
        #[cfg(not(feature = "onnx"))]
        return Err(format!("{}: this build reads no ONNX files; rebuild with `--features onnx`", path.display()));
    }
    let arch: Architecture = args.model.parse().map_err(|e: rap_attrib::AttribError| e.to_string())?;
    let weights = match &args.weights {
        Some(w) => w.clone(),
        None if arch == Architecture::SqueezeNet1_1 => assets().join("models/squeezenet1_1.safetensors"),
        None => return Err(format!("--weights is required for {} (only SqueezeNet 1.1 is bundled)", arch.name())),
    };
    let model = ZooModel::load(arch, &weights, device).map_err(|e| format!("{}: {e}", weights.display()))?;
    Ok(Model::Zoo(Box::new(model)))
}

fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(format!("{}: no PNG or JPEG files in this folder", p.display()));
            }
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else if p.exists() {
            return Err(format!(
                "{}: not a regular file (a device or a pipe); expected a picture or a folder",
                p.display()
            ));
        } else {
            return Err(format!("{}: no such file or folder", p.display()));
        }
    }
    Ok(out)
}

fn run(args: Args) -> Result<(), String> {
    if let Some(gib) = args.max_memory {
        if !(gib.is_finite() && gib > 0.0 && gib <= 1e6) {
            return Err(format!("--max-memory {gib}: expected a positive number of GiB"));
        }
        rap_attrib::limits::set_max_call_bytes((gib * f64::from(1u32 << 30)) as u64);
    }
    let device = rap_attrib::device_by_name(&args.device).map_err(|e| e.to_string())?;
    for rule in [&args.rule, &args.compare] {
        if !RULE_NAMES.contains(&rule.as_str()) && rule != "none" {
            return Err(format!("unknown rule `{rule}`; expected one of {}", RULE_NAMES.join(", ")));
        }
    }
    let model = load_model(&args, &device)?;
    let size = args.size.unwrap_or_else(|| model.side());
    // Class names: the given file, else ImageNet's; used where their count matches the logits.
    let classes_file = args.classes.clone().unwrap_or_else(|| assets().join("models/imagenet_classes.txt"));
    let names: Vec<String> = std::fs::read_to_string(&classes_file)
        .map_err(|e| format!("{}: {e}", classes_file.display()))?
        .lines()
        .map(String::from)
        .collect();
    let images =
        if args.image.is_empty() { vec![assets().join("images/chelsea.png")] } else { collect_images(&args.image)? };
    let main = model.composite(&args.rule)?;
    let second = match args.compare.as_str() {
        "none" => None,
        rule => Some((rule.to_string(), model.composite(rule)?)),
    };
    // One explainer per composite for all photos: it keeps each layer's prepared weights.
    let main_explainer = Explainer::new(&model, main);
    let second_explainer = second.as_ref().map(|(_, c)| Explainer::new(&model, c.clone()));
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let bar = (images.len() > 1).then(|| {
        let b = ProgressBar::new(images.len() as u64);
        b.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"));
        b
    });
    let name_of = |c: usize, classes: usize| {
        names.get(c).filter(|_| names.len() == classes).cloned().unwrap_or_else(|| format!("class {c}"))
    };
    for path in &images {
        let (photo, x) = load_imagenet(path, size, &device).map_err(|e| e.to_string())?;
        let target = match args.target {
            Some(t) => Target::Classes(vec![t]),
            None => Target::Predicted,
        };
        let e = main_explainer.explain(x.clone(), target.clone()).map_err(|e| e.to_string())?;
        let logits = to_vec(&e.logits);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        let report = |s: String| match &bar {
            Some(b) => b.suspend(|| out!("{s}")),
            None => out!("{s}"),
        };
        report(format!("{}:", path.display()));
        for (rank, &c) in order.iter().take(5).enumerate() {
            report(format!("  {}. {:>4} {:<40} logit {:.5}", rank + 1, c, name_of(c, logits.len()), logits[c]));
        }
        let t = e.targets[0];
        let total = sample_sums(&e.relevance)[0];
        if !e.vanished_samples().is_empty() {
            report(format!(
                "  warning: no relevance reached the input with {} (the map is all zero: every path was cut)",
                args.rule
            ));
        }
        report(format!(
            "  explained class {t} ({}) with {}: relevance sum {total:.6} (target logit {:.5})",
            name_of(t, logits.len()),
            args.rule,
            logits[t]
        ));
        let mut maps: Vec<(String, Tensor<4>)> = vec![(args.rule.clone(), e.relevance.clone())];
        if let (Some(explainer), Some((rule, _))) = (&second_explainer, &second) {
            let e2 = explainer.explain(x, target).map_err(|e| e.to_string())?;
            maps.push((rule.clone(), e2.relevance));
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let suffix = match &second {
            Some((r, _)) => format!("{}_vs_{r}", args.rule),
            None => args.rule.clone(),
        };
        let out = args.out.join(format!("{stem}_{suffix}.png"));
        let refs: Vec<(&str, &Tensor<4>)> = maps.iter().map(|(n, t)| (n.as_str(), t)).collect();
        viz::save_panel(&out, &photo, &refs, 0).map_err(|e| e.to_string())?;
        report(format!("  panel (photo | {}) written to {}", suffix.replace("_vs_", " | "), out.display()));
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_with_message("done");
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {}", e.lines().next().unwrap_or("unknown error"));
        std::process::exit(2);
    }
}
