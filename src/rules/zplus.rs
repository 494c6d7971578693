//! Z⁺.

use super::{Rule, RuleContext, Stabilizer, signed_weights, z_step};
use crate::error::Result;
use crate::layers::LinearLayer;
use crate::tensor::{neg, pos};
use burn::tensor::Tensor;

/// Z⁺: only the positive contributions `x⁺w⁺` and `x⁻w⁻` count, pooled in one denominator:
/// `R_i = Σ_j (x⁺_i w⁺_ji + x⁻_i w⁻_ji) / z⁺_j · R_j`, `z⁺_j = Σ_i x⁺_i w⁺_ji + x⁻_i w⁻_ji`.
///
/// Conservation: `Σ R_in = Σ_j R_j 1[z⁺_j ≠ 0]`. For `x ≥ 0` it equals LRP-α1β0.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZPlus;

impl Rule for ZPlus {
    fn name(&self) -> String {
        "Z+".into()
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        // [W⁺, |W⁻|], kept by the explainer between calls; `x⁻w⁻ = |x⁻|·|w⁻|`.
        let (_, wp, wn) = signed_weights(layer, ctx)?;
        let (wp, wn) = (&wp, &wn);
        let xp = pos(x.clone());
        if ctx.input_nonnegative {
            return Ok(z_step(layer, xp, wp, None, r, Stabilizer::Safe));
        }
        let xn = neg(x.clone()).neg();
        let shape = x.dims();
        let z = layer.forward_with(xp.clone(), wp, None) + layer.forward_with(xn.clone(), wn, None);
        let s = Stabilizer::Safe.divide(r, z);
        Ok(xp * layer.transpose_with(s.clone(), wp, shape) + xn * layer.transpose_with(s, wn, shape))
    }
}
