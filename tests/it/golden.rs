//! Golden cases: the authors' reference numbers for RAP and LRP-αβ, and Zennit 0.5.1's numbers
//! for its composites.
//!
//! Every `<case>.json` + `<case>.safetensors` pair in `tests/data/golden` and
//! `tests/data/golden_zennit` (copies of `../shared/golden` and `../shared/golden_zennit`),
//! `tests/data/golden_zennit_extra` (Zennit's numbers on a deeper VGG with an average pool and a
//! ResNet with three Bottlenecks, written by `scripts/zennit_cases.py`), and in the directories
//! named by `RAP_GOLDEN_DIR` (one or several joined by `:`, added to those; one directory may
//! hold cases of both kinds), is built by one generic loader
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

use crate::common;
use crate::common::golden as golden_common;

use common::device;
use golden_common::{Outcome, SUM_TOL, check_rules, compare};
use rap_attrib::burn::tensor::Device;
use rap_attrib::spec::{HostTensor, SpecNetwork, read_safetensors};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The golden directories of `tests/data`, then those of `RAP_GOLDEN_DIR`.
pub fn golden_dirs() -> Vec<PathBuf> {
    common::case_dirs("RAP_GOLDEN_DIR", &["golden", "golden_zennit", "golden_zennit_extra"])
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
    check_rules(&case, &net, &tensors, device, &|key| Some(key.to_string()), out);
}

#[test]
fn golden_cases() {
    let device = device();
    let mut out = Outcome::new();
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
