//! The wgpu backend gives the CPU backend's numbers: every golden case and rule, explained on
//! both devices, agree to `1e-4 · max|R|` at the input. On a mismatch the report names the first
//! layer (walking backwards) where the two differ.
//!
//! Runs only when built with `--features wgpu` (CI uses Mesa's software Vulkan driver).

#![cfg(feature = "wgpu")]

use rap_attrib::burn::tensor::{Device, DeviceKind, Tensor};
use rap_attrib::kit::to_vec;
use rap_attrib::spec::{SpecNetwork, read_safetensors};
use rap_attrib::{Composite, Explainer, Target};
use serde_json::Value;
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    crate::common::data().join("golden")
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn wgpu_agrees_with_the_cpu_on_every_golden_case() {
    let dir = golden_dir();
    let cpu = Device::flex();
    let gpu = Device::wgpu(DeviceKind::default());
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.with_extension("safetensors").exists())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut runs = 0;
    for json in &cases {
        let sidecar: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        let tensors = read_safetensors(json.with_extension("safetensors")).unwrap();
        let (params, prefix) = match sidecar.get("params_file").and_then(Value::as_str) {
            Some(f) => (read_safetensors(dir.join(f)).unwrap(), ""),
            None => (tensors.clone(), "param."),
        };
        let targets: Vec<usize> = tensors["target"].values.iter().map(|v| *v as usize).collect();
        for (rule, composite) in [
            ("rap", Composite::rap()),
            ("lrp_a1b0", Composite::lrp_alpha_beta(1.0, 0.0).unwrap()),
            ("lrp_a2b1", Composite::lrp_alpha_beta(2.0, 1.0).unwrap()),
        ] {
            let mut per_device = Vec::new();
            for device in [&cpu, &gpu] {
                let net = SpecNetwork::from_value(&sidecar, &params, prefix, device).unwrap();
                let e = Explainer::new(&net, composite.clone()).record_layers(true);
                let input = &tensors["input"];
                let (rel, layers) = if input.shape.len() == 4 {
                    let x: Tensor<4> = input.to_tensor("input", device).unwrap();
                    let r = e.explain(x, Target::Classes(targets.clone())).unwrap();
                    (
                        to_vec(&r.relevance),
                        r.layers.iter().map(|l| (l.name.clone(), to_vec(&l.output))).collect::<Vec<_>>(),
                    )
                } else {
                    let x: Tensor<2> = input.to_tensor("input", device).unwrap();
                    let r = e.explain(x, Target::Classes(targets.clone())).unwrap();
                    (
                        to_vec(&r.relevance),
                        r.layers.iter().map(|l| (l.name.clone(), to_vec(&l.output))).collect::<Vec<_>>(),
                    )
                };
                per_device.push((rel, layers));
            }
            runs += 1;
            let (c, g) = (&per_device[0], &per_device[1]);
            let tol = 1e-4 * max_abs(&c.0);
            let d = max_diff(&c.0, &g.0);
            let case = json.file_stem().unwrap().to_string_lossy();
            if d > tol {
                let first = c.1.iter().zip(&g.1).rev().find(|((_, a), (_, b))| max_diff(a, b) > 1e-4 * max_abs(a));
                let at =
                    first.map(|((n, a), (_, b))| format!("{n} (Δ {:.2e} of max {:.2e})", max_diff(a, b), max_abs(a)));
                failures.push(format!("{case}/{rule}: Δ {d:.3e} > {tol:.3e}; first differing layer output: {at:?}"));
            } else {
                println!("agree {case}/{rule}: max Δ/max|R| = {:.2e}", d / max_abs(&c.0).max(1e-30));
            }
        }
    }
    for f in &failures {
        println!("DIFFER {f}");
    }
    assert!(runs > 0);
    assert!(failures.is_empty(), "{} of {runs} runs differ between wgpu and the CPU", failures.len());
}
