//! Rank attribution methods the way the RAP paper does (its Table 1 and Fig. 7).
//!
//! With no arguments it runs RAP, LRP α1β0, LRP α2β1, LRP-ε, gradient, input × gradient,
//! integrated gradients and guided backprop on the bundled SqueezeNet 1.1 over the bundled Pascal
//! VOC photo with its instance masks, prints the outside–inside ratios (ALL, POS), segmentation
//! pixel accuracy and mIoU, pointing game and perturbation AOPC, and writes the MoRF and LeRF
//! curves (`perturbation.png`) and the heatmaps of every method (`heatmaps_<photo>.png`).
//!
//! ```sh
//! cargo run --release --example evaluate
//! cargo run --release --example evaluate -- --data my_photos/ --model resnet50 --weights resnet50.pth
//! ```
//!
//! `--data` takes a directory in the format of [`rap_attrib::evaluation::Dataset`]: `NAME.jpg`
//! with `NAME.mask.png` (object > 127) and/or `NAME.json` (`{"boxes": [[x1, y1, x2, y2]], "label": 281}`),
//! or a `labels.json` manifest like `assets/images/voc/labels.json`.

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rap_attrib::evaluation::{Dataset, EvaluationConfig, Progress, Report, evaluate};
use rap_attrib::gradients::{GradientExplainer, GradientMethod, IntegratedGradients, SmoothGrad};
use rap_attrib::imaging::{load_rgb, resize_bilinear};
use rap_attrib::metrics::{PerturbationConfig, Score, Threshold};
use rap_attrib::viz::{LinePanel, plot_lines};
use rap_attrib::zoo::{Architecture, ZooModel};
use rap_attrib::{AttributionMethod, Explainer, viz};
use std::path::PathBuf;

#[macro_use]
mod common;

use common::assets;

/// The methods, in the paper's column order, by command-line name.
const METHODS: [(&str, &str); 9] = [
    ("rap", "RAP"),
    ("lrp-a1b0", "LRP-a1b0"),
    ("lrp-a2b1", "LRP-a2b1"),
    ("lrp-eps", "LRP-eps"),
    ("gradient", "Gradient"),
    ("input-x-gradient", "Input*Grad"),
    ("integrated-gradients", "IntGrad"),
    ("guided-backprop", "GuidedBP"),
    ("smoothgrad", "SmoothGrad"),
];

/// Evaluate attribution methods: outside-inside ratio, segmentation, pointing game, perturbation.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Directory of photos with masks or boxes [default: the bundled Pascal VOC photo].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Architecture: vgg16, resnet18, resnet50 or squeezenet1_1.
    #[arg(long, default_value = "squeezenet1_1")]
    model: String,
    /// Weights (.pth/.pt or .safetensors, torchvision naming) [default: the bundled SqueezeNet 1.1].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Methods to compare (rap, lrp-a1b0, lrp-a2b1, lrp-eps, gradient, input-x-gradient,
    /// integrated-gradients, guided-backprop, smoothgrad).
    #[arg(long, num_args = 1.., value_delimiter = ',',
          default_value = "rap,lrp-a1b0,lrp-a2b1,lrp-eps,gradient,input-x-gradient,integrated-gradients,guided-backprop")]
    methods: Vec<String>,
    /// Pixels removed per perturbation step.
    #[arg(long, default_value_t = 100)]
    pixels: usize,
    /// Perturbation steps.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Score the perturbation curves follow: logit or probability.
    #[arg(long, default_value = "logit")]
    score: String,
    /// Segmentation threshold: auto (0 for signed maps, the mean otherwise), zero, mean, median,
    /// or a percentile such as p80.
    #[arg(long, default_value = "auto")]
    threshold: String,
    /// Integrated-gradients steps.
    #[arg(long, default_value_t = 50)]
    ig_steps: usize,
    /// Perturbed copies per forward pass [default: 32 on wgpu; 1 on cpu, where flex's batched
    /// convolutions cost more per image than single ones (docs/benchmarks.md)].
    #[arg(long)]
    batch: Option<usize>,
    /// Photos explained together [default: 8 on wgpu, 1 on cpu].
    #[arg(long)]
    images_per_batch: Option<usize>,
    /// Side of the square photos are resized to.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Output folder for the plot and heatmaps.
    #[arg(long, default_value = "target/evaluate")]
    out: PathBuf,
    /// Device: cpu, or wgpu when built with the `wgpu` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn threshold(s: &str) -> Result<Threshold, String> {
    Ok(match s {
        "auto" => Threshold::Auto,
        "zero" => Threshold::Zero,
        "mean" => Threshold::Mean,
        "median" => Threshold::Median,
        p if p.starts_with('p') => Threshold::Percentile(
            p[1..].parse().map_err(|_| format!("bad percentile `{p}`; write p followed by 0..100, as p80"))?,
        ),
        other => return Err(format!("unknown threshold `{other}`; expected auto, zero, mean, median or pNN")),
    })
}

fn plot(report: &Report, path: &PathBuf) -> Result<(), String> {
    let p = report.config.perturbation();
    let x: Vec<f32> = (0..=p.steps()).map(|k: usize| k.saturating_mul(p.pixels_per_step()) as f32).collect();
    let score = match p.score() {
        Score::Probability => "target probability",
        _ => "target logit",
    };
    let panel = |title: &str, y_label: &str, pick: &dyn Fn(&rap_attrib::evaluation::MethodResult) -> Vec<f32>| {
        let y_range = y_label.starts_with("fraction").then_some((-0.05, 1.05));
        LinePanel {
            y_range,
            title: title.into(),
            x_label: "pixels removed".into(),
            y_label: y_label.into(),
            x: x.clone(),
            series: report.methods.iter().map(|m| (m.name.clone(), pick(m))).collect(),
        }
    };
    let panels = [
        panel("MoRF: most relevant first", score, &|m| m.morf.mean_scores()),
        panel("LeRF: least relevant first", score, &|m| m.lerf.mean_scores()),
        panel("MoRF accuracy", "fraction still predicted", &|m| m.morf.accuracy()),
        panel("LeRF accuracy (paper's Fig. 7)", "fraction still predicted", &|m| m.lerf.accuracy()),
    ];
    plot_lines(path, &panels, 2, (640, 420)).map_err(|e| e.to_string())
}

fn run(args: Args) -> Result<(), String> {
    let device = rap_attrib::device_by_name(&args.device).map_err(|e| e.to_string())?;
    let arch: Architecture = args.model.parse().map_err(|e: rap_attrib::AttribError| e.to_string())?;
    let weights = match &args.weights {
        Some(w) => w.clone(),
        None if arch == Architecture::SqueezeNet1_1 => assets().join("models/squeezenet1_1.safetensors"),
        None => return Err(format!("--weights is required for {} (only SqueezeNet 1.1 is bundled)", arch.name())),
    };
    let model = ZooModel::load(arch, &weights, &device).map_err(|e| format!("{}: {e}", weights.display()))?;
    let dataset = match &args.data {
        Some(d) => Dataset::load(d),
        None => Dataset::load(assets().join("images/voc")),
    }
    .map_err(|e| e.to_string())?;
    if !dataset.skipped.is_empty() {
        eprintln!("skipped {} photo(s) without ground truth", dataset.skipped.len());
    }
    let score = match args.score.as_str() {
        "logit" => Score::Logit,
        "probability" => Score::Probability,
        other => return Err(format!("unknown score `{other}`; expected logit or probability")),
    };
    let config = EvaluationConfig::default()
        .with_size(args.size)
        .with_threshold(threshold(&args.threshold)?)
        .with_perturbation(
            PerturbationConfig::default()
                .with_pixels_per_step(args.pixels)
                .with_steps(args.steps)
                .with_score(score)
                .with_batch(args.batch.unwrap_or(if args.device == "wgpu" { 32 } else { 1 })),
        )
        .with_images_per_batch(args.images_per_batch.unwrap_or(if args.device == "wgpu" { 8 } else { 1 }));
    // Build the methods.
    let mut rule_methods = Vec::new();
    let mut grad_methods = Vec::new();
    for name in &args.methods {
        let label =
            METHODS.iter().find(|(n, _)| n == name).map(|(_, l)| *l).ok_or_else(|| {
                format!("unknown method `{name}`; expected one of {}", METHODS.map(|m| m.0).join(", "))
            })?;
        let gradient = match name.as_str() {
            "gradient" => Some(GradientMethod::Gradient),
            "input-x-gradient" => Some(GradientMethod::InputTimesGradient),
            "integrated-gradients" => {
                Some(GradientMethod::IntegratedGradients(IntegratedGradients::default().with_steps(args.ig_steps)))
            }
            "guided-backprop" => Some(GradientMethod::GuidedBackprop),
            "smoothgrad" => Some(GradientMethod::SmoothGrad(SmoothGrad::default())),
            _ => None,
        };
        match gradient {
            Some(g) => grad_methods.push((label, GradientExplainer::new(&model, g).with_chunk(8))),
            None => {
                rule_methods.push((label, Explainer::new(&model, model.composite(name).map_err(|e| e.to_string())?)))
            }
        }
    }
    let mut methods: Vec<(&str, &dyn AttributionMethod)> = Vec::new();
    for (_, label) in METHODS {
        if let Some((l, m)) = rule_methods.iter().find(|(l, _)| *l == label) {
            methods.push((l, m));
        }
        if let Some((l, m)) = grad_methods.iter().find(|(l, _)| *l == label) {
            methods.push((l, m));
        }
    }
    // Bad counts are refused by `evaluate` itself; the progress total only must not overflow.
    let per_batch = (methods.len() as u64).saturating_add(config.perturbation().steps() as u64).saturating_add(1);
    let batches = dataset.samples.len().div_ceil(config.images_per_batch().max(1)) as u64;
    let bar = ProgressBar::new(per_batch.saturating_mul(batches));
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}").map_err(|e| e.to_string())?,
    );
    let report = evaluate(&model, &methods, &dataset, &config, &device, &mut |p| {
        match p {
            Progress::Attributing { sample, batch, samples, method } => {
                bar.set_message(format!("images {}-{} of {samples}: {method}", sample + 1, sample + batch))
            }
            Progress::Perturbing { sample, batch, samples, step, steps } => bar.set_message(format!(
                "images {}-{} of {samples}: perturbation step {step}/{steps}",
                sample + 1,
                sample + batch
            )),
            _ => {}
        }
        bar.inc(1);
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let names: Vec<String> = std::fs::read_to_string(assets().join("models/imagenet_classes.txt"))
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default();
    for (s, t) in report.samples.iter().zip(&report.targets) {
        out!("{s}: explaining class {t} ({})", names.get(*t).map(String::as_str).unwrap_or("?"));
    }
    out!("{report}");
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let curves = args.out.join("perturbation.png");
    plot(&report, &curves)?;
    out!("wrote {}", curves.display());
    // Heatmaps of every method for the first photo (kept by the evaluation), for a look at what
    // was scored.
    if let Some(sample) = dataset.samples.first() {
        let photo = resize_bilinear(&load_rgb(&sample.image).map_err(|e| e.to_string())?, args.size, args.size);
        let refs: Vec<(&str, &_)> =
            report.methods.iter().filter_map(|m| m.first_relevance.as_ref().map(|r| (m.name.as_str(), r))).collect();
        let path = args.out.join(format!("heatmaps_{}.png", sample.name));
        viz::save_panel(&path, &photo, &refs, 0).map_err(|e| e.to_string())?;
        let order: Vec<&str> = methods.iter().map(|(n, _)| *n).collect();
        out!("wrote {} (photo, then {})", path.display(), order.join(", "));
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
