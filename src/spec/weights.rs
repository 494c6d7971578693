//! Reading tensors from safetensors files.

use crate::error::{AttribError, Result};
use burn::tensor::{Device, Tensor, TensorData};
#[cfg(feature = "weights")]
use safetensors::{Dtype, SafeTensors};
#[cfg(feature = "weights")]
use std::collections::HashMap;
#[cfg(feature = "weights")]
use std::path::Path;

/// A tensor read from a file, kept on the host as `f32` (the weights' own precision for `f32`
/// files, no wider copy while loading).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values as `f32` (`f64`, `f16`, `bf16` and integers converted; integers are exact below
    /// 2²⁴).
    pub values: Vec<f32>,
}

impl HostTensor {
    /// The values as `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.values.clone()
    }

    /// A device tensor of rank `D`; an error if the rank differs.
    pub fn to_tensor<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>> {
        self.clone().into_tensor(name, device)
    }

    /// [`to_tensor`](HostTensor::to_tensor) that moves the values into the tensor instead of
    /// copying them.
    pub fn into_tensor<const D: usize>(self, name: &str, device: &Device) -> Result<Tensor<D>> {
        if self.shape.len() != D {
            return Err(AttribError::Weights(format!("tensor `{name}` has shape {:?}; expected rank {D}", self.shape)));
        }
        Ok(Tensor::from_data(TensorData::new(self.values, self.shape), device))
    }
}

#[cfg(feature = "weights")]
/// All tensors of a safetensors file (f32, f64, f16, bf16, i64, i32 and bool are read).
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<HashMap<String, HostTensor>> {
    let path = path.as_ref();
    let bytes = crate::limits::read_file(path, crate::limits::MAX_FILE_BYTES)?;
    parse_safetensors(&bytes).map_err(|e| match e {
        AttribError::Weights(m) => AttribError::Weights(format!("{}: {m}", path.display())),
        other => other,
    })
}

#[cfg(feature = "weights")]
/// Parses safetensors bytes.
pub fn parse_safetensors(bytes: &[u8]) -> Result<HashMap<String, HostTensor>> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| AttribError::Weights(format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            Dtype::F32 => ElementKind::F32,
            Dtype::F64 => ElementKind::F64,
            Dtype::I64 => ElementKind::I64,
            Dtype::I32 => ElementKind::I32,
            Dtype::BOOL | Dtype::U8 => ElementKind::U8,
            Dtype::F16 => ElementKind::F16,
            Dtype::BF16 => ElementKind::BF16,
            other => {
                return Err(AttribError::Weights(format!("tensor `{name}` has unsupported dtype {other:?}")));
            }
        };
        let values = decode(kind, view.data());
        out.insert(name.to_string(), HostTensor { shape: view.shape().to_vec(), values });
    }
    Ok(out)
}

#[cfg(feature = "weights")]
/// Element types that [`decode`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElementKind {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 16-bit float.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// Byte (also bool).
    U8,
}

#[cfg(feature = "weights")]
/// Decodes little-endian element bytes to `f32` values.
pub(crate) fn decode(kind: ElementKind, data: &[u8]) -> Vec<f32> {
    /// Every whole `N`-byte element of `data` (a trailing partial element is dropped).
    fn each<const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        data.chunks_exact(N).filter_map(|c| <[u8; N]>::try_from(c).ok()).map(f).collect()
    }
    match kind {
        ElementKind::F32 => each(data, f32::from_le_bytes),
        ElementKind::F64 => each(data, |b| f64::from_le_bytes(b) as f32),
        ElementKind::I64 => each(data, |b| i64::from_le_bytes(b) as f32),
        ElementKind::I32 => each(data, |b| i32::from_le_bytes(b) as f32),
        ElementKind::U8 => data.iter().map(|&b| f32::from(b)).collect(),
        ElementKind::F16 => each(data, |b| half::f16::from_le_bytes(b).to_f32()),
        ElementKind::BF16 => each(data, |b| half::bf16::from_le_bytes(b).to_f32()),
    }
}
