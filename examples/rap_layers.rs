//! The paper's Fig. 4: RAP's positive and negative relevance at every Fire module of the real
//! ImageNet SqueezeNet 1.1 on the chelsea photo, channel-summed.
//!
//! Reads the network description, the weights and the preprocessed photo from `tests/data` (copies
//! of `../shared`; or the folder named by `RAP_SHARED_DIR`), prints per layer the spatial size, the positive and
//! negative relevance sums and the share of positive pixels, and writes every layer's
//! channel-summed map to `target/rap_layers/<layer>.csv` (rows × columns), and the input
//! heatmap ('seismic': red relevant, blue irrelevant) to `target/rap_layers/heatmap_rap_chelsea.png`.
//!
//! Run: `cargo run --release --example rap_layers`

use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::kit::to_vec;
use rap_attrib::spec::{SpecNetwork, read_safetensors};
use rap_attrib::{Composite, Explainer, Target};
use std::path::PathBuf;

#[macro_use]
mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The golden SqueezeNet case in the repository's test data (a copy of ../shared/golden), or
    // the folder named by `RAP_SHARED_DIR` (with `golden/` and `models/` inside).
    let shared = std::env::var("RAP_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data"));
    let golden = shared.join("golden");
    let sidecar = std::fs::read_to_string(golden.join("case_s_squeezenet_chelsea.json"))?;
    let params = read_safetensors(shared.join("models/squeezenet1_1.safetensors"))?;
    let tensors = read_safetensors(golden.join("case_s_squeezenet_chelsea.safetensors"))?;
    let device = Device::flex();
    let net = SpecNetwork::from_json(&sidecar, &params, "", &device)?;
    let x: Tensor<4> = tensors["input"].to_tensor("input", &device)?;
    let e = Explainer::new(&net, Composite::rap()).record_layers(true).explain(x, Target::Predicted)?;
    out!("class {} (logit {:.3})", e.targets[0], e.conservation().target_logits[0]);
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/rap_layers");
    std::fs::create_dir_all(&out_dir)?;
    out!("{:<22} {:>9} {:>11} {:>11} {:>8}", "relevance at", "size", "Σ R⁺", "Σ R⁻", "R⁺ px");
    let mut keys: Vec<String> = vec!["input".into()];
    keys.extend(["3", "4", "6", "7", "9", "10", "11", "12"].iter().map(|n| format!("features.{n}.output")));
    for key in keys {
        let r = if key == "input" { Some(e.relevance.clone()) } else { e.at(&key) };
        let Some(r) = r else { continue };
        let map = r.sum_dim(1);
        let [_, _, h, w] = map.dims();
        let v = to_vec(&map);
        let pos: f32 = v.iter().filter(|x| **x > 0.0).sum();
        let neg: f32 = v.iter().filter(|x| **x < 0.0).sum();
        let share = v.iter().filter(|x| **x > 0.0).count() as f32 / v.len() as f32;
        out!("{key:<22} {:>9} {pos:>11.4} {neg:>11.4} {:>7.1}%", format!("{h}x{w}"), 100.0 * share);
        let csv: Vec<String> =
            v.chunks(w).map(|row| row.iter().map(|x| format!("{x:e}")).collect::<Vec<_>>().join(",")).collect();
        std::fs::write(out_dir.join(format!("{key}.csv")), csv.join("\n"))?;
    }
    out!("maps written to {}", out_dir.display());
    let png = out_dir.join("heatmap_rap_chelsea.png");
    let [b, c, h, w] = e.relevance.dims();
    rap_attrib::viz::save_heatmap_png(&e.relevance.clone().reshape([b, c, h, w]), 0, &png)?;
    out!("heatmap written to {}", png.display());
    Ok(())
}
