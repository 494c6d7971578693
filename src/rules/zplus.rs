//! Z⁺.

use super::{Rule, RuleContext, Stabilizer};
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

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, _: &RuleContext) -> Result<Tensor<4>> {
        let w = layer.weight();
        let (wp, wn) = (pos(w.clone()), neg(w));
        let (xp, xn) = (pos(x.clone()), neg(x.clone()));
        let shape = x.dims();
        let z = layer.forward_with(xp.clone(), &wp, None) + layer.forward_with(xn.clone(), &wn, None);
        let s = Stabilizer::Safe.divide(r, z);
        Ok(xp * layer.transpose_with(s.clone(), &wp, shape) + xn * layer.transpose_with(s, &wn, shape))
    }
}
