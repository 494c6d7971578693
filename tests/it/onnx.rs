//! ONNX models explained to the golden numbers (`cargo test --features onnx --test onnx`).
//!
//! Every `<model>.onnx` in the directories of `RAP_ONNX_DIR` (one or several joined by `:`;
//! default `../shared/onnx` and `tests/data/onnx_extra`, written by `scripts/onnx_cases.py`:
//! MatMul + Add, a flatten by Reshape with a computed shape, AveragePool, Dropout, Identity, and
//! three Bottlenecks) is loaded by
//! [`OnnxModel`] and checked against whatever references exist for it, through the same
//! comparison as `tests/golden.rs`:
//!
//! - golden cases: every `<case>.json` + `<case>.safetensors` in the directories of
//!   `RAP_GOLDEN_DIR` (one or several joined by `:`; default `../shared/golden`,
//!   `../shared/golden_zennit` and `tests/data/golden_zennit_extra`) whose name contains the model's name as a whole `_`-separated run
//!   (`case_b_vgg` serves `case_b_vgg`, `case_b_vgg_argmin` and `zennit_case_b_vgg`; the longest
//!   model name wins). The case's `input` is explained with each rule it stores and the input
//!   relevance, the heatmap, the logits and, where `<model>.nodes.json` maps a module to an
//!   ONNX node, every stored layer relevance must match to the golden tolerance
//!   (1e-4·max|R_ref| per element, per-sample sums to 1e-5);
//! - `<model>.safetensors` beside the model with `input` and `logits`: the logits must match to
//!   1e-4·max|logit|, and RAP's explanation of the batch must equal each sample's alone;
//! - a model with no reference at all fails: nothing would be checked.
//!
//! One `PASS`/`FAIL` line per model and rule, as the golden test prints.

use crate::common;
use crate::common::golden as golden_common;

use common::device;
use golden_common::{Outcome, check_rules, compare};
use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::kit::to_vec;
use rap_attrib::onnx::OnnxModel;
use rap_attrib::spec::{HostTensor, read_safetensors};
use rap_attrib::{AttribError, Composite, Explainer, Target};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn onnx_dir() -> PathBuf {
    common::data().join("onnx")
}

/// The ONNX directories of `tests/data`, then those of `RAP_ONNX_DIR`.
fn onnx_dirs() -> Vec<PathBuf> {
    common::case_dirs("RAP_ONNX_DIR", &["onnx", "onnx_extra"])
}

fn golden_dirs() -> Vec<PathBuf> {
    crate::golden::golden_dirs()
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().to_string()
}

/// Whether `model` is a whole `_`-separated run of `case`.
fn serves(model: &str, case: &str) -> bool {
    format!("_{case}_").contains(&format!("_{model}_"))
}

/// Module name → ONNX node name, from `<model>.nodes.json` (empty without one).
fn node_names(model: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(model.with_extension("nodes.json")) else { return HashMap::new() };
    let v: Value = serde_json::from_str(&text).expect("parse nodes.json");
    let mut map = HashMap::new();
    for n in v["nodes"].as_array().into_iter().flatten() {
        if let (Some(module), Some(node)) = (n["module"].as_str(), n["onnx_node"].as_str()) {
            map.insert(module.to_string(), node.to_string());
        }
    }
    map
}

fn explain_rap(model: &OnnxModel, input: &HostTensor, device: &Device) -> Result<(Vec<f32>, Vec<f32>), AttribError> {
    let explainer = Explainer::new(model, Composite::rap());
    if input.shape.len() == 4 {
        let x: Tensor<4> = input.to_tensor("input", device)?;
        let e = explainer.explain(x, Target::Predicted)?;
        Ok((to_vec(&e.relevance), to_vec(&e.logits)))
    } else {
        let x: Tensor<2> = input.to_tensor("input", device)?;
        let e = explainer.explain(x, Target::Predicted)?;
        Ok((to_vec(&e.relevance), to_vec(&e.logits)))
    }
}

/// Logits against `<model>.safetensors`, and the batch against each sample alone.
fn check_reference(
    name: &str,
    model: &OnnxModel,
    tensors: &HashMap<String, HostTensor>,
    device: &Device,
    out: &mut Outcome,
) {
    let label = format!("{name}/logits");
    let input = &tensors["input"];
    let (rel, logits) = match explain_rap(model, input, device) {
        Ok(r) => r,
        Err(e) => return out.failed.push(format!("{label}: explain failed: {e}")),
    };
    let batch = input.shape[0];
    let worst = match compare("logits", &logits, &tensors["logits"], batch, 1e-5) {
        Ok(w) => w,
        Err(e) => return out.failed.push(format!("{label}: {e}")),
    };
    // Each sample alone gives the same relevance as in the batch.
    let per = input.values.len() / batch;
    let per_rel = rel.len() / batch;
    for b in 0..batch {
        let mut shape = input.shape.clone();
        shape[0] = 1;
        let one = HostTensor { shape, values: input.values[b * per..(b + 1) * per].to_vec() };
        let (r1, _) = explain_rap(model, &one, device).expect("explain one sample");
        let want = HostTensor { shape: vec![1, per_rel], values: r1.to_vec() };
        if let Err(e) = compare("rap batch vs alone", &rel[b * per_rel..(b + 1) * per_rel], &want, 1, 1e-5) {
            return out.failed.push(format!("{label}: sample {b}: {e}"));
        }
    }
    out.passed.push(format!(
        "{label}: logits worst |Δ|/max|logit| = {worst:.2e}; RAP of the batch = each sample alone ({batch} samples)"
    ));
}

#[test]
fn onnx_models_reproduce_the_golden_cases() {
    let device = device();
    let models: Vec<PathBuf> = onnx_dirs().iter().flat_map(|d| files(d, "onnx")).collect();
    assert!(!models.is_empty(), "no .onnx files in {:?}", onnx_dirs());
    let cases: Vec<(PathBuf, PathBuf)> = golden_dirs()
        .iter()
        .flat_map(|d| files(d, "json").into_iter().map(move |j| (d.clone(), j)))
        .filter(|(_, j)| j.with_extension("safetensors").exists())
        .collect();
    let names: Vec<String> = models.iter().map(|m| stem(m)).collect();
    let mut out = Outcome::new();
    for (path, name) in models.iter().zip(&names) {
        let before = out.passed.len() + out.failed.len();
        let model = match OnnxModel::from_file(path, &device) {
            Ok(m) => m,
            Err(e) => {
                out.failed.push(format!("{name}: loading failed: {e}"));
                continue;
            }
        };
        let map = node_names(path);
        for (dir, json) in &cases {
            let case = stem(json);
            // The longest model name that serves this case.
            let best = names.iter().filter(|m| serves(m, &case)).max_by_key(|m| m.len());
            if best != Some(name) {
                continue;
            }
            let tensors = read_safetensors(dir.join(format!("{case}.safetensors"))).expect("read golden tensors");
            let rename = |key: &str| map.get(key).cloned();
            check_rules(&format!("{name}→{case}"), &model, &tensors, &device, &rename, &mut out);
        }
        let reference = path.with_extension("safetensors");
        if reference.exists() {
            let tensors = read_safetensors(&reference).expect("read reference tensors");
            if tensors.contains_key("input") && tensors.contains_key("logits") {
                check_reference(name, &model, &tensors, &device, &mut out);
            }
        }
        if out.passed.len() + out.failed.len() == before {
            out.failed.push(format!("{name}: no golden case and no reference tensors: nothing to check"));
        }
    }
    for p in &out.passed {
        println!("PASS {p}");
    }
    for f in &out.failed {
        println!("FAIL {f}");
    }
    for (rule, (worst, runs)) in &out.worst {
        println!("onnx: {rule}: {runs} passing runs, worst |ΔR|/max|R_ref| = {worst:.2e}");
    }
    println!(
        "onnx: {} checks passed, {} failed, over {} models ({} stored layer relevances have no ONNX node)",
        out.passed.len(),
        out.failed.len(),
        models.len(),
        out.unmapped
    );
    assert!(out.failed.is_empty(), "{} ONNX checks failed", out.failed.len());
}

#[test]
fn case_names_are_matched_by_whole_runs() {
    assert!(serves("case_b_vgg", "case_b_vgg"));
    assert!(serves("case_b_vgg", "case_b_vgg_argmin"));
    assert!(serves("case_b_vgg", "zennit_case_b_vgg"));
    assert!(!serves("case_b_vgg", "case_b_vgg2"));
    assert!(!serves("case_b", "xcase_b_vgg"));
}

/// `case_a_mlp.onnx` with every `from` operator renamed `to` (same length, so the protobuf stays
/// valid).
fn renamed_ops(from: &str, to: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(onnx_dir().join("case_a_mlp.onnx")).expect("case_a_mlp.onnx");
    let (f, t) = (from.as_bytes(), to.as_bytes());
    assert_eq!(f.len(), t.len());
    let mut i = 0;
    let mut n = 0;
    while i + f.len() <= bytes.len() {
        if &bytes[i..i + f.len()] == f {
            bytes[i..i + f.len()].copy_from_slice(t);
            n += 1;
        }
        i += 1;
    }
    assert!(n > 0, "no `{from}` in the file");
    bytes
}

#[test]
fn an_unsupported_operator_is_an_error_naming_the_node_and_the_operator() {
    let device = device();
    match OnnxModel::from_bytes(&renamed_ops("Relu", "Ceil"), &device) {
        Err(AttribError::UnsupportedLayer { layer, layer_type, reason }) => {
            assert!(layer.contains("Relu") || !layer.is_empty(), "node name: {layer}");
            assert_eq!(layer_type, "Ceil");
            assert!(reason.contains("Conv"), "{reason}");
        }
        other => panic!("expected UnsupportedLayer, got {other:?}"),
    }
}

#[test]
fn broken_files_are_errors() {
    let device = device();
    let good = std::fs::read(onnx_dir().join("case_a_mlp.onnx")).expect("case_a_mlp.onnx");
    assert!(OnnxModel::from_bytes(&good, &device).is_ok());
    for cut in [0, 1, 7, good.len() / 3, good.len() / 2, good.len() - 1] {
        assert!(OnnxModel::from_bytes(&good[..cut], &device).is_err(), "a prefix of {cut} bytes was accepted");
    }
    assert!(OnnxModel::from_bytes(b"not an onnx file at all", &device).is_err());
    let e = OnnxModel::from_file("/nonexistent/model.onnx", &device).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/model.onnx"), "{e}");
}

#[test]
fn inputs_of_the_wrong_shape_are_refused() {
    let device = device();
    let model = OnnxModel::from_file(onnx_dir().join("case_b_vgg.onnx"), &device).unwrap();
    assert_eq!(model.input_shape(), &[None, Some(3), Some(16), Some(16)]);
    assert!(model.check_input(&[2, 3, 16, 16]).is_ok());
    let x = Tensor::<4>::zeros([1, 3, 15, 16], &device);
    let e = Explainer::new(&model, Composite::rap()).explain(x, Target::Predicted).unwrap_err();
    assert!(matches!(e, AttribError::InvalidParameter(_)), "{e}");
    assert!(e.to_string().contains("[batch, 3, 16, 16]"), "{e}");
}

#[test]
fn mutated_files_load_or_fail_without_panicking() {
    let device = device();
    let good = std::fs::read(onnx_dir().join("case_b_vgg.onnx")).expect("case_b_vgg.onnx");
    let mut rng = common::Rng::new(13);
    let cases: usize = std::env::var("RAP_HOSTILE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let (mut loaded, mut refused) = (0, 0);
    for _ in 0..cases {
        let mut bytes = good.clone();
        for _ in 0..rng.int(1, 8) {
            let i = rng.int(0, bytes.len() - 1);
            bytes[i] = match rng.int(0, 3) {
                0 => 0,
                1 => 0xFF,
                2 => bytes[i].wrapping_add(1),
                _ => rng.int(0, 255) as u8,
            };
        }
        match OnnxModel::from_bytes(&bytes, &device) {
            Ok(model) => {
                loaded += 1;
                let x = Tensor::<4>::ones([1, 3, 16, 16], &device);
                // A changed file may explain or refuse; it must not panic or return NaN silently.
                if let Ok(e) = Explainer::new(&model, Composite::rap()).explain(x, Target::Predicted) {
                    let r = to_vec(&e.relevance);
                    assert!(r.iter().all(|v| v.is_finite()), "a successful explanation holds a non-finite value");
                }
            }
            Err(_) => refused += 1,
        }
    }
    println!("onnx mutations: {loaded} loaded, {refused} refused");
}

/// The `explain` example built with the `onnx` feature, as a user runs it on an export.
#[test]
fn the_explain_example_takes_an_onnx_model() {
    let model = onnx_dir().join("case_s_squeezenet_chelsea.onnx");
    if !model.exists() {
        panic!("{} is missing", model.display());
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    // The features this test was built with, so the example shares its build.
    let mut features = vec!["onnx"];
    for (on, f) in [(cfg!(feature = "ndarray"), "ndarray"), (cfg!(feature = "wgpu"), "wgpu")] {
        if on {
            features.push(f);
        }
    }
    let features = features.join(" ");
    build
        .args(["build", "--quiet", "--features", features.as_str(), "--example", "explain"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building the explain example with onnx failed");
    let bin = profile_dir.join("examples").join(format!("explain{}", std::env::consts::EXE_SUFFIX));
    let out_dir = std::env::temp_dir().join(format!("rap-attrib-onnx-cli-{}", std::process::id()));
    let out = std::process::Command::new(bin)
        .args(["--onnx", model.to_str().unwrap(), "--out", out_dir.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // chelsea.png, resized as the golden case was: the golden case's top class.
    let first = stdout.lines().find(|l| l.trim_start().starts_with("1.")).unwrap_or("");
    assert!(first.contains("285") && first.contains("Egyptian cat"), "{stdout}");
    assert!(out_dir.join("chelsea_rap_vs_lrp-a1b0.png").is_file(), "{stdout}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// A small ONNX model written here (opset 13): Conv → Relu → ReduceMean over [2, 3] (keepdims 0,
/// MnasNet's pooling) → Gemm, and the same network traced with Burn's modules: the logits and
/// the LRP-ε and RAP relevances must be the same.
#[test]
fn reduce_mean_over_the_spatial_axes_is_the_global_average_pool() {
    use rap_attrib::burn::module::Param;
    use rap_attrib::burn::nn::conv::{Conv2d, Conv2dConfig};
    use rap_attrib::burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
    use rap_attrib::burn::nn::{Linear, LinearConfig, Relu};
    use rap_attrib::onnx_ir::{
        AttributeProto, AttributeType, Message, ModelProto, NodeProto, TensorProto, ValueInfoProto,
    };
    use rap_attrib::{Explain, Node, Result, Tracer};

    let dev = device();
    let mut rng = common::Rng::new(31);
    let mut vals = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32 * 0.5).collect() };
    let (w_conv, b_conv, w_fc, b_fc) = (vals(4 * 3 * 3 * 3), vals(4), vals(5 * 4), vals(5));
    let tensor = |name: &str, dims: &[i64], v: &[f32]| {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = 1;
        t.float_data = v.to_vec();
        t
    };
    let ints = |name: &str, v: &[i64]| {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = AttributeType::INTS.into();
        a.ints = v.to_vec();
        a
    };
    let int = |name: &str, v: i64| {
        let mut a = AttributeProto::new();
        a.name = name.into();
        a.type_ = AttributeType::INT.into();
        a.i = v;
        a
    };
    let node = |op: &str, name: &str, ins: &[&str], out: &str, attrs: Vec<AttributeProto>| {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = name.into();
        n.input = ins.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.into()];
        n.attribute = attrs;
        n
    };
    let value = |name: &str, dims: &[Option<i64>]| {
        let mut v = ValueInfoProto::new();
        v.name = name.into();
        let t = v.type_.mut_or_insert_default().mut_tensor_type();
        t.elem_type = 1;
        let shape = t.shape.mut_or_insert_default();
        for d in dims {
            shape.dim.push(Default::default());
            let last = shape.dim.last_mut().unwrap();
            match d {
                Some(d) => last.set_dim_value(*d),
                None => last.set_dim_param("N".into()),
            }
        }
        v
    };
    let mut model = ModelProto::new();
    model.ir_version = 8;
    model.opset_import.push(Default::default());
    model.opset_import[0].version = 13;
    let g = model.graph.mut_or_insert_default();
    g.name = "reduce_mean".into();
    g.input.push(value("input", &[None, Some(3), Some(6), Some(6)]));
    g.output.push(value("logits", &[None, Some(5)]));
    g.initializer = vec![
        tensor("conv.weight", &[4, 3, 3, 3], &w_conv),
        tensor("conv.bias", &[4], &b_conv),
        tensor("fc.weight", &[5, 4], &w_fc),
        tensor("fc.bias", &[5], &b_fc),
    ];
    g.node = vec![
        node("Conv", "/conv/Conv", &["input", "conv.weight", "conv.bias"], "c", vec![ints("kernel_shape", &[3, 3])]),
        node("Relu", "/relu/Relu", &["c"], "r", vec![]),
        node("ReduceMean", "/mean/ReduceMean", &["r"], "m", vec![ints("axes", &[2, 3]), int("keepdims", 0)]),
        node("Gemm", "/fc/Gemm", &["m", "fc.weight", "fc.bias"], "logits", vec![int("transB", 1)]),
    ];
    let onnx = OnnxModel::from_bytes(&model.write_to_bytes().unwrap(), &dev).unwrap();
    assert!(
        onnx.graph().steps().iter().any(|(n, t)| *n == "/mean/ReduceMean" && *t == "ReduceMean"),
        "{:?}",
        onnx.graph().steps()
    );

    struct Burn {
        conv: Conv2d,
        relu: Relu,
        pool: AdaptiveAvgPool2d,
        fc: Linear,
    }
    impl Explain for Burn {
        fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
            let h = t.layer("conv", &self.conv, x)?;
            let h = t.layer("relu", &self.relu, h)?;
            let h = t.layer("pool", &self.pool, h)?;
            let h = t.flatten("flat", h)?;
            t.layer("fc", &self.fc, h)
        }
    }
    let from = |v: &[f32], dims: [usize; 4]| {
        Tensor::<4>::from_data(rap_attrib::burn::tensor::TensorData::new(v.to_vec(), dims), &dev)
    };
    let mut conv = Conv2dConfig::new([3, 4], [3, 3]).init(&dev);
    conv.weight = Param::from_tensor(from(&w_conv, [4, 3, 3, 3]));
    conv.bias = Some(Param::from_tensor(Tensor::from_floats(b_conv.as_slice(), &dev)));
    let mut fc = LinearConfig::new(4, 5).init(&dev);
    fc.weight = Param::from_tensor(from(&w_fc, [5, 4, 1, 1]).reshape([5, 4]).transpose());
    fc.bias = Some(Param::from_tensor(Tensor::from_floats(b_fc.as_slice(), &dev)));
    let burn = Burn { conv, relu: Relu::new(), pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(), fc };
    let x = Tensor::<4>::random([2, 3, 6, 6], rap_attrib::burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
    for composite in [Composite::epsilon(1e-6).unwrap(), Composite::rap()] {
        let a = Explainer::new(&onnx, composite.clone()).explain(x.clone(), Target::Classes(vec![1, 3])).unwrap();
        let b = Explainer::new(&burn, composite).explain(x.clone(), Target::Classes(vec![1, 3])).unwrap();
        let (la, lb) = (to_vec(&a.logits), to_vec(&b.logits));
        assert!(la.iter().zip(&lb).all(|(p, q)| (p - q).abs() <= 1e-5), "{la:?} {lb:?}");
        let (ra, rb) = (to_vec(&a.relevance), to_vec(&b.relevance));
        let scale = rb.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        assert!(ra.iter().zip(&rb).all(|(p, q)| (p - q).abs() <= 1e-5 * scale));
    }
}
