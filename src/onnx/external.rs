//! Weights kept as external data beside the `.onnx` file: every reference is checked before the
//! parser follows it, so that a path that leaves the model's folder, or names a directory or a
//! device, is a one-line typed error (the parser would panic on a directory).

use crate::error::{AttribError, Result};
use onnx_ir::ModelProto;
use std::path::{Component, Path};

/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// Checks the external data references of `model`, whose file lies in `base` (`None` for a
/// model given as bytes, which cannot have any).
pub(super) fn check(model: &ModelProto, base: Option<&Path>) -> Result<()> {
    for t in &model.graph.initializer {
        if t.data_location.value() != EXTERNAL {
            continue;
        }
        let location = t.external_data.iter().find(|e| e.key == "location").map(|e| e.value.clone());
        let Some(location) = location else {
            return Err(AttribError::Onnx(format!("initializer `{}` is external data without a `location`", t.name)));
        };
        let rel = Path::new(&location);
        if location.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(AttribError::Onnx(format!(
                "initializer `{}`: external data `location` = {location:?} leaves the model's folder; expected a \
                 file name beside the model",
                t.name
            )));
        }
        let Some(base) = base else {
            return Err(AttribError::Onnx(format!(
                "initializer `{}` keeps its data in the file {location:?}; load the model with OnnxModel::from_file",
                t.name
            )));
        };
        crate::limits::check_file(&base.join(rel), crate::limits::MAX_FILE_BYTES)
            .map_err(|e| AttribError::Onnx(format!("initializer `{}`: external data: {e}", t.name)))?;
    }
    Ok(())
}
