//! LRP-αβ.

use super::{Rule, RuleContext, share};
use crate::error::{AttribError, Result};
use crate::layers::LinearLayer;
use crate::tensor::{any_negative, neg, pos};
use burn::tensor::Tensor;

/// LRP-αβ with `α − β = 1`, exactly as the RAP authors' reference computes it:
///
/// ```text
/// act = x⁺ ⊙ W⁺ᵀ sd(R, W⁺x⁺) + x⁻ ⊙ W⁻ᵀ sd(R, W⁻x⁻)
/// inh = x⁺ ⊙ W⁻ᵀ sd(R, W⁻x⁺) + x⁻ ⊙ W⁺ᵀ sd(R, W⁺x⁻)
/// R_in = α · act − β · inh
/// ```
///
/// No bias and no ε; `sd` is the safe divide. The x⁺ and x⁻ parts are normalised separately
/// (unlike Zennit, which pools them), so an input of mixed sign returns up to twice the
/// relevance. The x⁻ terms are skipped when the input has no negative entry (known from the
/// graph after a ReLU, else checked on the device).
///
/// Conservation: for `x ≥ 0`, `Σ R_in = α Σ_j R_j 1[z⁺_j ≠ 0] − β Σ_j R_j 1[z⁻_j ≠ 0]`, which is
/// `Σ R` where every `z⁺_j` and `z⁻_j` is nonzero.
#[derive(Debug, Clone, Copy)]
pub struct AlphaBeta {
    /// Weight of the activating part (≥ 1).
    pub alpha: f64,
    /// Weight of the inhibiting part (`α − 1`).
    pub beta: f64,
}

impl AlphaBeta {
    /// LRP-αβ; an error unless `α ≥ 1`, `β ≥ 0` and `α − β = 1`.
    pub fn new(alpha: f64, beta: f64) -> Result<Self> {
        if alpha >= 1.0 && beta >= 0.0 && ((alpha - beta) - 1.0).abs() < 1e-12 {
            Ok(Self { alpha, beta })
        } else {
            Err(AttribError::InvalidParameter(format!(
                "LRP-αβ needs α ≥ 1, β ≥ 0 and α − β = 1; got α = {alpha}, β = {beta}"
            )))
        }
    }
}

impl Rule for AlphaBeta {
    fn name(&self) -> String {
        format!("LRP-α{}β{}", self.alpha, self.beta)
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        let w = layer.weight();
        let (wp, wn) = (pos(w.clone()), neg(w));
        let xp = pos(x.clone());
        let has_neg = !ctx.input_nonnegative && any_negative(x);
        let xn = neg(x.clone());
        let mut act = share(layer, xp.clone(), &wp, r.clone());
        if has_neg {
            act = act + share(layer, xn.clone(), &wn, r.clone());
        }
        let mut out = act.mul_scalar(self.alpha);
        if self.beta != 0.0 {
            let mut inh = share(layer, xp, &wn, r.clone());
            if has_neg {
                inh = inh + share(layer, xn, &wp, r);
            }
            out = out - inh.mul_scalar(self.beta);
        }
        Ok(out)
    }
}
