//! The float64 path (`rap_attrib::float64`): a device configured for `f64` runs the whole walk in
//! double precision. LXT's float64 references of `../shared/modern` (or `tests/data/modern`) are
//! reproduced far below float32's spread: every case, preset and stored input relevance to
//! [`TOL`]·max|R_ref| (the float32 path holds 1e-4).
//!
//! Its own test binary: a device's float type is set once per process, before its first tensor.

use rap_attrib::burn::tensor::{DType, Device, Tensor};
use rap_attrib::limits::Limits;
use rap_attrib::onnx::OnnxModel;
use rap_attrib::rules::{Sharing, SoftmaxRule, WithSoftmax};
use rap_attrib::spec::read_safetensors;
use rap_attrib::{AttribError, Composite, Explainer, Target};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Element-wise tolerance against the float64 reference, relative to max|R_ref|.
const TOL: f64 = 1e-7;

/// The `F64` tensors of a safetensors file, at full precision.
fn f64_tensors(path: &Path) -> HashMap<String, Vec<f64>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = HashMap::new();
    for (k, v) in header.as_object().unwrap() {
        if v.get("dtype").and_then(|d| d.as_str()) != Some("F64") {
            continue;
        }
        let o = v["data_offsets"].as_array().unwrap();
        let (s, e) = (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize);
        out.insert(k.clone(), data[s..e].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect());
    }
    out
}

fn case_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/modern");
    if shared.is_dir() { shared } else { root.join("tests/data/modern") }
}

#[test]
fn the_float64_path_reproduces_the_float64_references() {
    let dev = rap_attrib::float64(Device::flex()).unwrap();
    // A second configuration of the same device is a typed error, not a panic.
    assert!(matches!(rap_attrib::float64(Device::flex()), Err(AttribError::InvalidParameter(_))));
    // A GPU device is refused, not trusted.
    #[cfg(feature = "wgpu")]
    assert!(matches!(
        rap_attrib::float64(Device::wgpu(rap_attrib::burn::tensor::DeviceKind::default())),
        Err(AttribError::InvalidParameter(_))
    ));
    // The memory account counts 8 bytes per element on the float64 path: a bound of one byte
    // refuses the input itself, 2·3·32·32 elements of `f64`.
    {
        let onnx = case_dir().join("vit_tiny.onnx");
        let model = OnnxModel::from_file(&onnx, &dev).unwrap();
        let host = read_safetensors(onnx.with_extension("safetensors")).unwrap();
        let x: Tensor<4> = host["input"].to_tensor("input", &dev).unwrap();
        let tight =
            Explainer::new(&model, Composite::cp_epsilon()).with_limits(Limits::default().with_max_call_bytes(1));
        match tight.explain(x, Target::Predicted) {
            Err(AttribError::MemoryBudget { bytes, .. }) => assert_eq!(bytes, 2 * 3 * 32 * 32 * 8),
            other => panic!("{other:?}"),
        }
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(case_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut runs = 0;
    for onnx in &cases {
        let name = onnx.file_stem().unwrap().to_string_lossy().to_string();
        let model = OnnxModel::from_file(onnx, &dev).unwrap();
        let host = read_safetensors(onnx.with_extension("safetensors")).unwrap();
        let refs = f64_tensors(&onnx.with_extension("safetensors"));
        let x: Tensor<4> = host["input"].to_tensor("input", &dev).unwrap();
        assert_eq!(x.dtype(), DType::F64);
        let targets: Vec<usize> = host["target"].to_f32().iter().map(|&t| t as usize).collect();
        let mut presets: Vec<&str> = refs.keys().filter_map(|k| k.strip_suffix(".input.f64")).collect();
        presets.sort();
        for preset in presets {
            let composite: Composite = preset.parse().unwrap();
            let e = Explainer::new(&model, composite).explain(x.clone(), Target::Classes(targets.clone())).unwrap();
            assert_eq!(e.relevance.dtype(), DType::F64, "{name} {preset}");
            let got: Vec<f64> = e.relevance.to_data().try_to_vec::<f64>().unwrap();
            let want = &refs[&format!("{preset}.input.f64")];
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = got.iter().zip(want).fold(0f64, |m, (g, w)| m.max((g - w).abs())) / scale;
            println!("{name} {preset}: worst {worst:.2e}");
            assert!(worst <= TOL, "{name} {preset}: worst |ΔR| = {worst:.2e}·max|R_ref| > {TOL:e}");
            runs += 1;
        }
    }
    assert!(runs >= 15, "{runs} runs");

    // Against LXT's own computations (`scripts/attnlrp_cases.py`, `scripts/swin_case.py`): with
    // the stabiliser of the weight-free ops as small as LXT's (none; 1e-12 here), the two agree
    // to float64 rounding, which checks AttnLRP's softmax rule and the uniform rule on q·Kᵀ and
    // P·V, and Swin's shifted-window attention and patch merging (padding, shift and mask
    // included), themselves.
    let lxt_cases = [
        (
            "vit_attnlrp",
            "attn_lrp",
            Composite::attn_lrp().with_sharing(WithSoftmax::new(Sharing::Norm(1e-12), SoftmaxRule::AttnLrp)),
        ),
        ("swin_cp", "cp_epsilon", Composite::cp_epsilon().with_sharing(Sharing::Norm(1e-12))),
        (
            "swin_cp",
            "attn_lrp",
            Composite::attn_lrp().with_sharing(WithSoftmax::new(Sharing::Norm(1e-12), SoftmaxRule::AttnLrp)),
        ),
    ];
    for (case, preset, lxt) in lxt_cases {
        let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/modern_extra/{case}.onnx"));
        let model = OnnxModel::from_file(&onnx, &dev).unwrap();
        let host = read_safetensors(onnx.with_extension("safetensors")).unwrap();
        let want = &f64_tensors(&onnx.with_extension("safetensors"))[&format!("{preset}.input.f64")];
        let x: Tensor<4> = host["input"].to_tensor("input", &dev).unwrap();
        let targets: Vec<usize> = host["target"].to_f32().iter().map(|&t| t as usize).collect();
        let e = Explainer::new(&model, lxt).explain(x, Target::Classes(targets)).unwrap();
        let got: Vec<f64> = e.relevance.to_data().try_to_vec::<f64>().unwrap();
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(want).fold(0f64, |m, (g, w)| m.max((g - w).abs())) / scale;
        println!("{case} {preset} (LXT's stabilisers): worst {worst:.2e}");
        assert!(worst <= 1e-6, "{case} {preset} against LXT: worst |ΔR| = {worst:.2e}·max|R_ref|");
    }
}
