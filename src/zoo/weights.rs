//! Loading and checking zoo weights.

use crate::error::{AttribError, Result};
use crate::spec::{ElementKind, HostTensor, decode, read_safetensors};
use burn::store::pytorch::PytorchReader;
use burn::store::pytorch_reader::DType;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Reads every tensor of a `.safetensors` file or a PyTorch `.pth`/`.pt` checkpoint (a
/// `state_dict`, or a checkpoint holding one under `state_dict` or `model`).
pub fn load_parameters(path: impl AsRef<Path>) -> Result<HashMap<String, HostTensor>> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(AttribError::io_message(shown, "no such file"));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => read_safetensors(path),
        "pth" | "pt" | "bin" | "ckpt" => {
            let reader = PytorchReader::new(path)
                .map_err(|e| AttribError::Weights(format!("{shown}: not a readable PyTorch checkpoint: {e}")))?;
            let mut tensors = reader.into_tensors();
            // Unwrap a training checkpoint's state dict.
            for prefix in ["state_dict.", "model."] {
                if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with(prefix)) {
                    tensors = tensors.into_iter().map(|(k, v)| (k[prefix.len()..].to_string(), v)).collect();
                }
            }
            let mut out = HashMap::new();
            for (name, t) in tensors {
                let kind = match t.dtype() {
                    DType::F32 => ElementKind::F32,
                    DType::F64 => ElementKind::F64,
                    DType::F16 => ElementKind::F16,
                    DType::BF16 => ElementKind::BF16,
                    DType::I64 => ElementKind::I64,
                    DType::I32 => ElementKind::I32,
                    DType::U8 | DType::Bool => ElementKind::U8,
                    other => {
                        return Err(AttribError::Weights(format!(
                            "{shown}: tensor `{name}` has unsupported dtype {other:?}"
                        )));
                    }
                };
                let bytes = t.read().map_err(|e| AttribError::Weights(format!("{shown}: tensor `{name}`: {e}")))?;
                out.insert(name, HostTensor { shape: t.shape().to_vec(), values: decode(kind, &bytes) });
            }
            Ok(out)
        }
        _ => Err(AttribError::Weights(format!(
            "{shown}: unknown weight format `.{ext}`; expected .pth, .pt or .safetensors"
        ))),
    }
}

/// Every parameter a description expects, in torchvision naming, with its shape.
pub fn expected_parameters(spec: &Value) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    let u = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
    for l in spec.get("layers").and_then(Value::as_array).into_iter().flatten() {
        let name = l.get("name").and_then(Value::as_str).unwrap_or("");
        match l.get("type").and_then(Value::as_str).unwrap_or("") {
            "Conv2d" => {
                let (ci, co, g) = (u(l, "in_channels"), u(l, "out_channels"), u(l, "groups").max(1));
                let k = &l["kernel_size"];
                let (kh, kw) = (k[0].as_u64().unwrap_or(1) as usize, k[1].as_u64().unwrap_or(1) as usize);
                out.insert(format!("{name}.weight"), vec![co, ci / g, kh, kw]);
                if l.get("bias").and_then(Value::as_bool).unwrap_or(true) {
                    out.insert(format!("{name}.bias"), vec![co]);
                }
            }
            "Linear" => {
                let (fi, fo) = (u(l, "in_features"), u(l, "out_features"));
                out.insert(format!("{name}.weight"), vec![fo, fi]);
                if l.get("bias").and_then(Value::as_bool).unwrap_or(true) {
                    out.insert(format!("{name}.bias"), vec![fo]);
                }
            }
            "BatchNorm2d" => {
                let c = u(l, "num_features");
                for p in ["weight", "bias", "running_mean", "running_var"] {
                    out.insert(format!("{name}.{p}"), vec![c]);
                }
            }
            _ => {}
        }
    }
    out
}

/// Checks a parameter map against a description: nothing missing, nothing extra, every shape
/// right. `num_batches_tracked` buffers are ignored.
pub(crate) fn check_strict(spec: &Value, params: &HashMap<String, HostTensor>) -> Result<()> {
    let expected = expected_parameters(spec);
    for (name, shape) in &expected {
        match params.get(name) {
            None => return Err(AttribError::Weights(format!("missing tensor `{name}` (expected shape {shape:?})"))),
            Some(t) if &t.shape != shape => {
                return Err(AttribError::Weights(format!(
                    "tensor `{name}` has shape {:?}; expected {shape:?}",
                    t.shape
                )));
            }
            _ => {}
        }
    }
    let mut extra: Vec<&String> =
        params.keys().filter(|k| !expected.contains_key(*k) && !k.ends_with("num_batches_tracked")).collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(AttribError::Weights(format!(
            "unexpected tensor `{first}` ({} extra in all): the weights are for another model",
            extra.len()
        )));
    }
    Ok(())
}
