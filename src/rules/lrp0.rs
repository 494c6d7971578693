//! LRP-0.

use super::{Rule, RuleContext, Stabilizer, z_step};
use crate::base::LinearLayer;
use crate::error::Result;
use burn::tensor::Tensor;

/// LRP-0 (the basic rule): `R_i = Σ_j x_i w_ji / z_j · R_j` with `z_j = Σ_i x_i w_ji + b_j`.
///
/// Conservation: without bias, `Σ_i R_i = Σ_j R_j · 1[z_j ≠ 0]` exactly (zero denominators
/// give zero, never NaN). With a bias the bias share `Σ_j R_j b_j / z_j` is absorbed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lrp0 {
    ignore_bias: bool,
}

impl Lrp0 {
    /// LRP-0 with the bias in the denominator.
    pub fn new() -> Self {
        Self { ignore_bias: false }
    }

    /// LRP-0 without the bias (the denominator is `Σ_i x_i w_ji` alone).
    pub fn without_bias() -> Self {
        Self { ignore_bias: true }
    }

    /// Whether the bias is left out of the denominator.
    pub fn ignores_bias(&self) -> bool {
        self.ignore_bias
    }
}

impl Rule for Lrp0 {
    fn name(&self) -> String {
        "LRP-0".into()
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, _: &RuleContext) -> Result<Tensor<4>> {
        let bias = if self.ignore_bias { None } else { layer.bias() };
        Ok(z_step(layer, x.clone(), &layer.weight(), bias, r, Stabilizer::Safe))
    }
}
