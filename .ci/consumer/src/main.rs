//! A user's own `#[derive(Module)]` CNN explained through the packaged crate (default features,
//! the flex backend), and, with `--features onnx`, the shared ONNX models explained to the golden
//! numbers.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Distribution, Tensor};
use rap_attrib::{Composite, Explain, Explainer, Node, Target, Tracer};

#[derive(Module, Debug)]
struct Cnn {
    conv: Conv2d,
    bn: BatchNorm,
    relu: Relu,
    pool: MaxPool2d,
    fc: Linear,
}

impl Cnn {
    fn new(device: &Device) -> Self {
        Cnn {
            conv: Conv2dConfig::new([3, 8], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device),
            bn: BatchNormConfig::new(8).init(device),
            relu: Relu::new(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc: LinearConfig::new(8 * 8 * 8, 10).init(device),
        }
    }

    /// The model's own forward pass.
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.relu.forward(self.bn.forward(self.conv.forward(x))));
        let [b, c, h, w] = x.dims();
        self.fc.forward(x.reshape([b, c * h * w]))
    }
}

impl Explain for Cnn {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> rap_attrib::Result<Node> {
        let x = t.layer("conv", &self.conv, x)?;
        let x = t.layer("bn", &self.bn, x)?;
        let x = t.layer("relu", &self.relu, x)?;
        let x = t.layer("pool", &self.pool, x)?;
        let x = t.flatten("flatten", x)?;
        t.layer("fc", &self.fc, x)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = rap_attrib::device_by_name("flex")?;
    let model = Cnn::new(&device);
    let x = Tensor::<4>::random([3, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let explainer = Explainer::new(&model, Composite::rap());
    explainer.check_trace(x.clone(), model.forward(x.clone()), 1e-4)?;
    let e = explainer.explain(x.clone(), Target::Predicted)?;
    assert_eq!(e.relevance.dims(), [3, 3, 16, 16]);
    // A batch gives what each sample gives alone.
    let batch: Vec<f32> = e.relevance.clone().into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    for b in 0..3 {
        let one = explainer.explain(x.clone().slice(b..b + 1), Target::Predicted)?;
        let alone: Vec<f32> = one.relevance.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        let part = &batch[b * alone.len()..(b + 1) * alone.len()];
        let scale = alone.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        let worst = part.iter().zip(&alone).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        if worst > 1e-4 * scale {
            return Err(format!("sample {b}: batch and alone differ by {worst}").into());
        }
    }
    println!("consumer: own #[derive(Module)] CNN explained with RAP on {device:?}; trace checked; batch = each sample alone");
    #[cfg(feature = "onnx")]
    onnx::run(&device)?;
    Ok(())
}

#[cfg(feature = "onnx")]
mod onnx {
    //! Every `<model>.onnx` in `RAP_ONNX_DIR` explained from each golden case of
    //! `RAP_GOLDEN_DIR` named `<model>` or `<model>_<variant>`, with each rule the case stores;
    //! the input relevance must match to 1e-4·max|R_ref| per element.

    use burn::tensor::{Device, Tensor, TensorData};
    use rap_attrib::onnx::OnnxModel;
    use rap_attrib::{Composite, Explainer, Target};
    use std::path::PathBuf;

    fn read(path: &PathBuf) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, Box<dyn std::error::Error>> {
        let bytes = std::fs::read(path)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let mut out = Vec::new();
        for (name, view) in st.tensors() {
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => {
                    view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
                }
                safetensors::Dtype::I64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                    .collect(),
                _ => continue,
            };
            out.push((name, view.shape().to_vec(), values));
        }
        Ok(out)
    }

    fn preset(rule: &str) -> Option<Composite> {
        match rule {
            "rap" => Some(Composite::rap()),
            r => {
                let (a, b) = r.strip_prefix("lrp_a")?.split_once('b')?;
                Composite::lrp_alpha_beta(a.parse().ok()?, b.parse().ok()?).ok()
            }
        }
    }

    pub fn run(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
        let onnx_dir = PathBuf::from(std::env::var("RAP_ONNX_DIR")?);
        let golden_dir = PathBuf::from(std::env::var("RAP_GOLDEN_DIR")?);
        let (mut passed, mut failed) = (0, 0);
        let mut models: Vec<PathBuf> = std::fs::read_dir(&onnx_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
            .collect();
        models.sort();
        for path in models {
            let name = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
            let model = OnnxModel::from_file(&path, device)?;
            for entry in std::fs::read_dir(&golden_dir)? {
                let case_path = entry?.path();
                let case = case_path.file_stem().unwrap_or_default().to_string_lossy().to_string();
                if case_path.extension().is_none_or(|x| x != "safetensors")
                    || !(case == name || case.starts_with(&format!("{name}_")))
                {
                    continue;
                }
                let tensors = read(&case_path)?;
                let get = |k: &str| tensors.iter().find(|(n, _, _)| n == k);
                let (Some((_, shape, input)), Some((_, _, target))) = (get("input"), get("target")) else { continue };
                let targets: Vec<usize> = target.iter().map(|&t| t as usize).collect();
                for (key, _, want) in tensors.iter().filter(|(n, _, _)| n.ends_with(".input_relevance")) {
                    let rule = key.trim_end_matches(".input_relevance");
                    let Some(composite) = preset(rule) else { continue };
                    let explainer = Explainer::new(&model, composite);
                    let data = TensorData::new(input.clone(), shape.clone());
                    let got: Vec<f32> = if shape.len() == 4 {
                        let e = explainer.explain(Tensor::<4>::from_data(data, device), Target::Classes(targets.clone()))?;
                        e.relevance.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?
                    } else {
                        let e = explainer.explain(Tensor::<2>::from_data(data, device), Target::Classes(targets.clone()))?;
                        e.relevance.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?
                    };
                    let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let worst = got.iter().zip(want).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
                    if got.len() == want.len() && worst <= 1e-4 * max {
                        passed += 1;
                        println!("PASS {name}→{case}/{rule}: worst |ΔR|/max|R_ref| = {:.2e}", worst / max.max(1e-30));
                    } else {
                        failed += 1;
                        println!("FAIL {name}→{case}/{rule}: worst |ΔR| = {worst:.3e} > 1e-4·{max:.3e}");
                    }
                }
            }
        }
        println!("consumer onnx: {passed} passed, {failed} failed");
        if failed > 0 || passed == 0 {
            return Err(format!("{failed} ONNX rule runs failed, {passed} passed").into());
        }
        Ok(())
    }
}
