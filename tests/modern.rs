//! Modern architectures against LXT: every case of `RAP_MODERN_DIR` (by default `../shared/modern`,
//! else the copy in `tests/data/modern`, and `tests/data/modern_extra`), one generic loader for the format of
//! `../shared/modern/README.md`: `<case>.onnx` (the network), `<case>.safetensors` (`input`,
//! `logits`, `target`, and per preset `P.input` and `P.<ONNX tensor>`, the reference relevance).
//!
//! Every case and preset prints one `PASS`, `FAIL` or `REFUSED` line. A case passes when its
//! logits are within 1e-5·max|logit| of the stored ones and every stored relevance key is within
//! 1e-4·max|R_ref| element by element, with per-sample sums within 1e-4·Σ|R_ref|. A case whose
//! network holds an operator the crate refuses (a typed `UnsupportedLayer` naming the node) is
//! `REFUSED`, and so is one the ONNX parser cannot type (a typed `Onnx` error); with
//! `RAP_MODERN_STRICT=1` a refusal fails the test too. On the shipped cases (no
//! `RAP_MODERN_DIR`), at least [`SHIPPED_PASSING`] case × preset runs must pass, so that a case
//! that passes today cannot fall back to a refusal unnoticed.
//!
//! Run: `cargo test --features onnx --test modern -- --nocapture`.

use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::onnx::OnnxModel;
use rap_attrib::spec::{HostTensor, read_safetensors};
use rap_attrib::{AttribError, Composite, Explainer, Target};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Element-wise tolerance, relative to the largest reference relevance of the tensor;
/// `RAP_MODERN_TOL` changes it (full-size networks against a float64 reference:
/// `scripts/lxt_zoo.py`).
/// A case's sidecar `<case>.json` may state its own `tolerance` (with `tolerance_why`).
fn tol(onnx: &Path) -> f64 {
    let env = std::env::var("RAP_MODERN_TOL").ok().and_then(|v| v.parse().ok());
    let sidecar = std::fs::read_to_string(onnx.with_extension("json"))
        .ok()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .and_then(|j| j.get("tolerance").and_then(serde_json::Value::as_f64));
    env.or(sidecar).filter(|t: &f64| *t > 0.0).unwrap_or(1e-4)
}

/// The case × preset runs that pass on the shipped cases: MobileNetV2, MobileNetV3 and
/// EfficientNet, ConvNeXt and the ViT under the three presets, and the ViT of
/// `tests/data/modern_extra` under `attn-lrp` (AttnLRP as LXT computes it,
/// `scripts/attnlrp_cases.py`).
const SHIPPED_PASSING: usize = 18;

/// Burn's flex CPU device (also in builds with a GPU backend, whose default device would be the
/// GPU), or with `RAP_MODERN_FLOAT64=1` the float64 path on it ([`rap_attrib::float64`]).
fn device() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            if std::env::var("RAP_MODERN_FLOAT64").is_ok_and(|v| v == "1") {
                rap_attrib::float64(Device::flex()).expect("a fresh flex device takes f64")
            } else {
                Device::flex()
            }
        })
        .clone()
}

/// The case directories: `RAP_MODERN_DIR` (several joined by the path separator), else
/// `../shared/modern` beside the repository, else `tests/data/modern`.
fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(dirs) = std::env::var_os("RAP_MODERN_DIR") {
        return std::env::split_paths(&dirs).collect();
    }
    let shared = root.join("../shared/modern");
    let base = if shared.is_dir() { shared } else { root.join("tests/data/modern") };
    vec![base, root.join("tests/data/modern_extra")]
}

/// Every `<case>.onnx` with a `<case>.safetensors` beside it, sorted.
fn cases() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in case_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "onnx") && p.with_extension("safetensors").is_file() {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// The worst `|got − want| / max|want|` and whether the per-sample sums hold.
fn compare(got: &[f32], want: &HostTensor, batch: usize, tol: f64) -> std::result::Result<f64, String> {
    if got.len() != want.values.len() {
        return Err(format!("{} values, the reference has {} ({:?})", got.len(), want.values.len(), want.shape));
    }
    let scale = want.values.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
    let worst = got.iter().zip(&want.values).fold(0f64, |m, (g, w)| m.max(f64::from(g - w).abs()));
    let rel = if scale > 0.0 { worst / scale } else { worst };
    if got.iter().any(|v| !v.is_finite()) {
        return Err("non-finite relevance".into());
    }
    let per = got.len() / batch.max(1);
    for s in 0..batch {
        let (g, w) = (&got[s * per..(s + 1) * per], &want.values[s * per..(s + 1) * per]);
        let sum_g: f64 = g.iter().map(|v| f64::from(*v)).sum();
        let sum_w: f64 = w.iter().map(|v| f64::from(*v)).sum();
        let abs_w: f64 = w.iter().map(|v| f64::from(v.abs())).sum();
        if (sum_g - sum_w).abs() > tol * abs_w.max(f64::MIN_POSITIVE) {
            return Err(format!("sample {s}: ΣR = {sum_g:.6e}, reference {sum_w:.6e} (Σ|R_ref| = {abs_w:.3e})"));
        }
    }
    if rel > tol { Err(format!("worst |ΔR|/max|R_ref| = {rel:.2e} > {tol:e}")) } else { Ok(rel) }
}

fn values(t: &Tensor<4>) -> Vec<f32> {
    t.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default()
}

enum Outcome {
    Pass(f64),
    Fail(Vec<String>),
    Refused(String),
}

/// Runs one preset on one case: the input relevance and every stored intermediate key.
fn run(onnx: &Path, data: &HashMap<String, HostTensor>, preset: &str, keys: &[&str]) -> Outcome {
    let dev = device();
    let mut model = match OnnxModel::from_file(onnx, &dev) {
        Ok(m) => m,
        // A typed refusal: an operator the crate does not explain, or an export the parser
        // cannot type (PyTorch's ViT, issue 19).
        Err(e @ (AttribError::UnsupportedLayer { .. } | AttribError::Onnx(_))) => {
            return Outcome::Refused(e.to_string());
        }
        Err(e) => return Outcome::Fail(vec![format!("load: {e}")]),
    };
    let mut failures = Vec::new();
    for key in keys.iter().filter(|k| **k != "input") {
        if let Err(e) = model.mark(key) {
            failures.push(format!("{key}: {e}"));
        }
    }
    let composite = match preset.parse::<Composite>() {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(vec![format!("preset: {e}")]),
    };
    let (Some(input), Some(target), Some(logits)) = (data.get("input"), data.get("target"), data.get("logits")) else {
        return Outcome::Fail(vec!["the case lacks `input`, `target` or `logits`".into()]);
    };
    let x: Tensor<4> = match input.to_tensor("input", &dev) {
        Ok(x) => x,
        Err(e) => return Outcome::Fail(vec![format!("input: {e}")]),
    };
    let batch = input.shape[0];
    let targets: Vec<usize> = target.to_f32().iter().map(|&t| t as usize).collect();
    let explainer = Explainer::new(&model, composite).record_layers(true);
    let e = match explainer.explain(x, Target::Classes(targets)) {
        Ok(e) => e,
        Err(e @ AttribError::UnsupportedLayer { .. }) => return Outcome::Refused(e.to_string()),
        Err(e) => return Outcome::Fail(vec![format!("explain: {e}")]),
    };
    // The forward pass first: the logits of the file's own float32 forward.
    let got_logits = e.logits.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
    let lmax = logits.values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let lworst = got_logits.iter().zip(&logits.values).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    if got_logits.len() != logits.values.len() || lworst > 1e-5 * lmax.max(1.0) {
        failures.push(format!("logits: worst |Δ| = {lworst:.2e} of max {lmax:.3e}"));
    }
    let mut worst = 0f64;
    for key in keys {
        let Some(want) = data.get(&format!("{preset}.{key}")) else { continue };
        // In the file's own layout (a channels-last map as [B, H, W, C]).
        let got = if *key == "input" { Some(values(&e.relevance)) } else { e.logical_at(key).map(|(_, v)| v) };
        match got.map(|g| compare(&g, want, batch, tol(onnx))) {
            Some(Ok(rel)) => worst = worst.max(rel),
            Some(Err(m)) => failures.push(format!("{key}: {m}")),
            None => failures.push(format!("{key}: no relevance recorded")),
        }
    }
    if failures.is_empty() { Outcome::Pass(worst) } else { Outcome::Fail(failures) }
}

#[test]
fn modern_architectures_match_lxt() {
    let strict = std::env::var("RAP_MODERN_STRICT").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(!cases.is_empty(), "no case found in {:?}", case_dirs());
    let (mut passed, mut failed, mut refused) = (0, Vec::new(), Vec::new());
    for onnx in &cases {
        let case = onnx.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        let data = match read_safetensors(onnx.with_extension("safetensors")) {
            Ok(d) => d,
            Err(e) => {
                failed.push(format!("{case}: {e}"));
                continue;
            }
        };
        // preset → the tensors it stores (`input` and ONNX tensor names; `.f64` copies aside).
        let mut presets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in data.keys() {
            if let Some((p, rest)) = k.split_once('.')
                && !rest.ends_with(".f64")
                && !matches!(p, "input" | "logits" | "target")
            {
                presets.entry(p.to_string()).or_default().push(rest.to_string());
            }
        }
        for (preset, keys) in &presets {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            match run(onnx, &data, preset, &keys) {
                Outcome::Pass(w) => {
                    println!("PASS {case} {preset}: {} keys, worst {w:.2e}", keys.len());
                    passed += 1;
                }
                Outcome::Fail(why) => {
                    println!("FAIL {case} {preset}: {}", why.join("; "));
                    failed.push(format!("{case} {preset}"));
                }
                Outcome::Refused(why) => {
                    println!("REFUSED {case} {preset}: {why}");
                    refused.push(format!("{case} {preset}"));
                }
            }
        }
    }
    println!("{passed} passed, {} failed, {} refused", failed.len(), refused.len());
    assert!(failed.is_empty(), "failed: {failed:?}");
    assert!(!strict || refused.is_empty(), "refused (RAP_MODERN_STRICT=1): {refused:?}");
    assert!(passed > 0, "no case ran");
    if std::env::var_os("RAP_MODERN_DIR").is_none() {
        assert!(passed >= SHIPPED_PASSING, "{passed} runs passed; the shipped cases have {SHIPPED_PASSING} that pass");
    }
}
