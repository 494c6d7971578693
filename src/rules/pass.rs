//! Pass.

use super::{Rule, RuleContext};
use crate::base::LinearLayer;
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// Pass: relevance crosses the layer unchanged. Meant for shape-preserving layers such as
/// BatchNorm.
///
/// With `mask_zero_inputs` (the RAP reference's BatchNorm treatment) relevance is dropped where
/// the layer input is exactly 0: `R_in = R · 1[x ≠ 0]`; the lost amount is the relevance at
/// those positions. Without it the rule conserves exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    mask_zero_inputs: bool,
}

impl Pass {
    /// Pass, relevance unchanged (Zennit's BatchNorm and activation rule).
    pub fn new() -> Self {
        Self { mask_zero_inputs: false }
    }

    /// Pass that drops relevance where the layer input is exactly 0 (the RAP reference's
    /// BatchNorm).
    pub fn masked() -> Self {
        Self { mask_zero_inputs: true }
    }

    /// Whether relevance is dropped where the input is exactly zero.
    pub fn masks_zero_inputs(&self) -> bool {
        self.mask_zero_inputs
    }
}

impl Rule for Pass {
    fn name(&self) -> String {
        if self.mask_zero_inputs { "Pass(x≠0)".into() } else { "Pass".into() }
    }

    fn relevance(&self, _layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        if r.dims() != x.dims() {
            return Err(AttribError::UnsupportedLayer {
                layer: ctx.name.to_string(),
                layer_type: ctx.layer_type.to_string(),
                reason: "Pass needs a layer whose output has its input's shape".into(),
            });
        }
        Ok(if self.mask_zero_inputs { r.mask_fill(x.clone().equal_elem(0.0), 0.0) } else { r })
    }
}
