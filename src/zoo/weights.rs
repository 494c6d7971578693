//! Loading and checking zoo weights.

use crate::error::{AttribError, Result};
use crate::spec::NetworkDesc;
use crate::spec::{ElementKind, HostTensor, decode, read_safetensors};
use burn::store::pytorch::PytorchReader;
use burn::store::pytorch_reader::DType;
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
            crate::limits::check_file(path, crate::limits::MAX_FILE_BYTES)?;
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

/// Every parameter a description expects, in torchvision naming, with its shape
/// ([`NetworkDesc::parameters`]).
pub fn expected_parameters(spec: &NetworkDesc) -> BTreeMap<String, Vec<usize>> {
    spec.parameters()
}

/// Checks a parameter map against a description: nothing missing, nothing extra, every shape
/// right. `num_batches_tracked` buffers are ignored.
pub(crate) fn check_strict(spec: &NetworkDesc, params: &HashMap<String, HostTensor>) -> Result<()> {
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
