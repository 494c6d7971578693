//! Golden cases: the authors' reference numbers for RAP and LRP-αβ, and Zennit 0.5.1's numbers
//! for its composites.
//!
//! Every `<case>.json` + `<case>.safetensors` pair in `../shared/golden`,
//! `../shared/golden_zennit` and `tests/data/golden_zennit_extra` (Zennit's numbers on a deeper
//! VGG with an average pool and a ResNet with three Bottlenecks, written by
//! `scripts/zennit_cases.py`), or in the directories named by `RAP_GOLDEN_DIR` (one or several
//! joined by `:`; one directory may hold cases of both kinds), is built by one generic loader
//! ([`SpecNetwork`]) and explained with each rule whose keys the case stores. The key prefix
//! `<rule>` of `<rule>.input_relevance` picks the preset:
//!
//! | key prefix | preset |
//! |---|---|
//! | `rap` | `Composite::rap()` |
//! | `lrp_a<α>b<β>` | `Composite::lrp_alpha_beta(α, β)` |
//! | `zennit_epsilon_plus` | `Composite::zennit_epsilon_plus()` |
//! | `zennit_epsilon_plus_flat` | `Composite::zennit_epsilon_plus_flat()` |
//! | `zennit_epsilon_gamma_box` | `Composite::zennit_epsilon_gamma_box(Bounds::PerSample)` (low/high: per-sample min/max of the input, as the files' README says) |
//! | `zennit_epsilon_alpha2_beta1` | `Composite::zennit_epsilon_alpha2_beta1()` |
//! | `zennit_epsilon_alpha2_beta1_flat` | `Composite::zennit_epsilon_alpha2_beta1_flat()` |
//!
//! A prefix with no preset is a failure, not a skip. Checks, per the golden READMEs:
//! - elementwise `|R − R_ref| ≤ 1e-4 · max|R_ref|` at the input, at every `<rule>.rel.<key>`,
//!   `<rule>.rel_chsum.<key>` and at the heatmap;
//! - per-sample sums of every compared tensor to relative 1e-5 (of the larger of the sum and
//!   the per-sample Σ|R_ref|, so that sums that cancel to near zero are judged on their scale).

mod common;

use common::device;
use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::rules::Bounds;
use rap_attrib::spec::{HostTensor, SpecNetwork, read_safetensors};
use rap_attrib::tensor::to_vec;
use rap_attrib::{Composite, Explainer, Explanation, Target};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ELEM_TOL: f64 = 1e-4;
/// Per-sample sums, relative, for both kinds of case (Zennit's README asks 1e-4; with its
/// BatchNorm merge reproduced, [`BatchNormMerge::Zennit`](rap_attrib::BatchNormMerge), 1e-5 holds).
const SUM_TOL: f64 = 1e-5;

fn golden_dirs() -> Vec<PathBuf> {
    match std::env::var_os("RAP_GOLDEN_DIR") {
        Some(d) => std::env::split_paths(&d).collect(),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let shared = root.join("../shared");
            vec![shared.join("golden"), shared.join("golden_zennit"), root.join("tests/data/golden_zennit_extra")]
        }
    }
}

fn composite_for(rule: &str) -> Option<Composite> {
    match rule {
        "rap" => Some(Composite::rap()),
        "zennit_epsilon_plus" => Some(Composite::zennit_epsilon_plus()),
        "zennit_epsilon_plus_flat" => Some(Composite::zennit_epsilon_plus_flat()),
        "zennit_epsilon_gamma_box" => Some(Composite::zennit_epsilon_gamma_box(Bounds::PerSample)),
        "zennit_epsilon_alpha2_beta1" => Some(Composite::zennit_epsilon_alpha2_beta1()),
        "zennit_epsilon_alpha2_beta1_flat" => Some(Composite::zennit_epsilon_alpha2_beta1_flat()),
        r if r.starts_with("lrp_a") => {
            let (a, b) = r.trim_start_matches("lrp_a").split_once('b')?;
            Composite::lrp_alpha_beta(a.parse().ok()?, b.parse().ok()?).ok()
        }
        _ => None,
    }
}

/// Compares `got` with `want` (same number of elements, batch-major); returns a failure text.
fn compare(key: &str, got: &[f32], want: &HostTensor, batch: usize, sum_tol: f64) -> Result<f64, String> {
    let want_v = want.to_f32();
    if got.len() != want_v.len() {
        return Err(format!("{key}: {} values, reference has {} (shape {:?})", got.len(), want_v.len(), want.shape));
    }
    let max_ref = want_v.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let mut worst = 0f64;
    for (g, w) in got.iter().zip(&want_v) {
        let d = (*g as f64 - *w as f64).abs();
        if !g.is_finite() {
            return Err(format!("{key}: non-finite value {g}"));
        }
        worst = worst.max(d);
    }
    if worst > ELEM_TOL * max_ref {
        return Err(format!(
            "{key}: max |R − R_ref| = {worst:.3e} > {ELEM_TOL:e} · max|R_ref| = {:.3e}",
            ELEM_TOL * max_ref
        ));
    }
    let per = got.len() / batch;
    for b in 0..batch {
        let gs: f64 = got[b * per..(b + 1) * per].iter().map(|&v| v as f64).sum();
        let ws: f64 = want_v[b * per..(b + 1) * per].iter().map(|&v| v as f64).sum();
        let wa: f64 = want_v[b * per..(b + 1) * per].iter().map(|&v| v.abs() as f64).sum();
        let scale = ws.abs().max(wa);
        if (gs - ws).abs() > sum_tol * scale {
            return Err(format!(
                "{key}: sample {b} sums to {gs:.7} vs reference {ws:.7} (tolerance {:.2e})",
                sum_tol * scale
            ));
        }
    }
    Ok(if max_ref > 0.0 { worst / max_ref } else { worst })
}

struct Outcome {
    passed: Vec<String>,
    failed: Vec<String>,
    /// Per rule prefix: the worst `|ΔR|/max|R_ref|` over its passing runs, and their number.
    worst: std::collections::BTreeMap<String, (f64, usize)>,
}

fn run_case(dir: &Path, json_path: &Path, device: &Device, out: &mut Outcome) {
    let case = json_path.file_stem().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(json_path).expect("read sidecar");
    let sidecar: Value = serde_json::from_str(&text).expect("parse sidecar");
    let tensors = read_safetensors(dir.join(format!("{case}.safetensors"))).expect("read tensors");
    let (params, prefix) = match sidecar.get("params_file").and_then(Value::as_str) {
        Some(file) => (read_safetensors(dir.join(file)).expect("read params_file"), ""),
        None => (tensors.clone(), "param."),
    };
    let net = SpecNetwork::from_value(&sidecar, &params, prefix, device).expect("build network");
    let input = &tensors["input"];
    let batch = input.shape[0];
    let targets: Vec<usize> = tensors["target"].values.iter().map(|&v| v as usize).collect();
    let rules: Vec<String> = {
        let mut r: Vec<String> =
            tensors.keys().filter_map(|k| k.strip_suffix(".input_relevance").map(String::from)).collect();
        r.sort();
        r
    };
    for rule in rules {
        let label = format!("{case}/{rule}");
        let Some(composite) = composite_for(&rule) else {
            out.failed.push(format!("{label}: no composite for rule `{rule}`"));
            continue;
        };
        let explainer = Explainer::new(&net, composite).record_layers(true);
        let result = if input.shape.len() == 4 {
            let x: Tensor<4> = input.to_tensor("input", device).unwrap();
            explainer.explain(x, Target::Classes(targets.clone())).map(|e| {
                let v = to_vec(&e.relevance);
                (v, e.heatmap().ok().map(|h| to_vec(&h)), erase(&e))
            })
        } else {
            let x: Tensor<2> = input.to_tensor("input", device).unwrap();
            explainer.explain(x, Target::Classes(targets.clone())).map(|e| (to_vec(&e.relevance), None, erase(&e)))
        };
        let (rel, heat, lookup) = match result {
            Ok(r) => r,
            Err(e) => {
                out.failed.push(format!("{label}: explain failed: {e}"));
                continue;
            }
        };
        let sum_tol = SUM_TOL;
        let mut checks: Vec<(String, Result<f64, String>)> = Vec::new();
        checks.push((
            "input_relevance".into(),
            compare("input_relevance", &rel, &tensors[&format!("{rule}.input_relevance")], batch, sum_tol),
        ));
        if let (Some(h), Some(want)) = (heat, tensors.get(&format!("{rule}.heatmap"))) {
            checks.push(("heatmap".into(), compare("heatmap", &h, want, batch, sum_tol)));
        }
        // Logits.
        if let Some(want) = tensors.get("logits") {
            checks.push(("logits".into(), compare("logits", &lookup.logits, want, batch, sum_tol)));
        }
        let mut keys: Vec<&String> = tensors.keys().filter(|k| k.starts_with(&format!("{rule}.rel"))).collect();
        keys.sort();
        for key in keys {
            let (chsum, inner) = if let Some(k) = key.strip_prefix(&format!("{rule}.rel_chsum.")) {
                (true, k)
            } else if let Some(k) = key.strip_prefix(&format!("{rule}.rel.")) {
                (false, k)
            } else {
                continue;
            };
            if key.ends_with(".f64") {
                continue;
            }
            let r = match lookup.at.get(inner) {
                Some(t) => {
                    let got = if chsum { to_vec(&t.clone().sum_dim(1)) } else { to_vec(t) };
                    compare(key, &got, &tensors[key.as_str()], batch, sum_tol)
                }
                None => Err(format!("{key}: the explanation has no relevance named `{inner}`")),
            };
            checks.push((key.clone(), r));
        }
        let mut worst = 0f64;
        let mut bad = Vec::new();
        for (k, r) in &checks {
            match r {
                Ok(w) => worst = worst.max(*w),
                Err(e) => bad.push(format!("  {k}: {e}")),
            }
        }
        if bad.is_empty() {
            let entry = out.worst.entry(rule.clone()).or_insert((0.0, 0));
            *entry = (entry.0.max(worst), entry.1 + 1);
            out.passed.push(format!("{label}: {} keys, worst |ΔR|/max|R_ref| = {worst:.2e}", checks.len()));
        } else {
            out.failed.push(format!("{label}:\n{}", bad.join("\n")));
        }
    }
}

/// The parts of an explanation the comparison needs, independent of the input rank.
struct Lookup {
    logits: Vec<f32>,
    at: HashMap<String, Tensor<4>>,
}

fn erase<const D: usize>(e: &Explanation<D>) -> Lookup {
    let mut at = HashMap::new();
    for l in &e.layers {
        if let Some(first) = l.inputs.first() {
            at.insert(l.name.clone(), first.clone());
        }
        for (label, t) in l.labels.iter().zip(&l.inputs) {
            at.insert(format!("{}.{label}", l.name), t.clone());
        }
    }
    for (k, t) in &e.marked {
        at.insert(k.clone(), t.clone());
    }
    Lookup { logits: to_vec(&e.logits), at }
}

#[test]
fn golden_cases() {
    let device = device();
    let mut out = Outcome { passed: Vec::new(), failed: Vec::new(), worst: Default::default() };
    let mut count = 0;
    for dir in golden_dirs() {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("golden directory {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| p.with_extension("safetensors").exists())
            .collect();
        cases.sort();
        assert!(!cases.is_empty(), "no golden cases in {}", dir.display());
        count += cases.len();
        for case in &cases {
            run_case(&dir, case, &device, &mut out);
        }
    }
    let cases = vec![(); count];
    for p in &out.passed {
        println!("PASS {p}");
    }
    for f in &out.failed {
        println!("FAIL {f}");
    }
    for (rule, (worst, runs)) in &out.worst {
        println!("golden: {rule}: {runs} passing runs, worst |ΔR|/max|R_ref| = {worst:.2e}");
    }
    println!("golden: {} rule runs passed, {} failed, over {} cases", out.passed.len(), out.failed.len(), cases.len());
    assert!(out.failed.is_empty(), "{} golden rule runs failed", out.failed.len());
}

#[test]
fn comparison_rejects_a_wrong_result() {
    let want = HostTensor { shape: vec![1, 4], values: vec![1.0, -2.0, 0.5, 0.0] };
    assert!(compare("same", &[1.0, -2.0, 0.5, 0.0], &want, 1, SUM_TOL).is_ok());
    // One element off by 2e-4 · max|R_ref| (max is 2).
    assert!(compare("elem", &[1.0, -2.0, 0.5 + 4e-4, 0.0], &want, 1, SUM_TOL).is_err());
    // A per-sample sum off by 2e-5 relative, elements within tolerance; then 2e-6.
    let big = HostTensor { shape: vec![1, 4], values: vec![1.0; 4] };
    assert!(compare("sum", &[1.0, 1.0, 1.0, 1.0 + 8e-5], &big, 1, SUM_TOL).is_err());
    assert!(compare("sum", &[1.0, 1.0, 1.0, 1.0 + 8e-6], &big, 1, SUM_TOL).is_ok());
    assert!(compare("shape", &[1.0, -2.0, 0.5], &want, 1, SUM_TOL).is_err());
    assert!(compare("nan", &[1.0, -2.0, f32::NAN, 0.0], &want, 1, SUM_TOL).is_err());
}
