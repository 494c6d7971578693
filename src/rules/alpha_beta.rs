//! LRP-αβ.

use super::{Rule, RuleContext, share, signed_weights, stack_error};
use crate::error::{AttribError, Result};
use crate::layers::{LinearLayer, WeightStack};
use crate::tensor::{neg, pos, safe_div};
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
/// relevance. The x⁻ terms are skipped when the graph shows the input non-negative (after a
/// ReLU); otherwise they are computed (zero where `x` has no negative entry), never by reading
/// the sign back from the device. Both parts of a sign branch are one product over the stacked
/// `[W⁺; |W⁻|]` and one adjoint over the stacked shares.
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

impl AlphaBeta {
    /// `u ⊙ Σ (α·act − β·inh)` for one sign branch `u ≥ 0` of the input: `u = x⁺` weighs the
    /// activating part through `W⁺` and the inhibiting part through `|W⁻|`; `u = |x⁻|` the other
    /// way round (the signs of `x⁻` and `W⁻` cancel in each term).
    fn branch(
        &self,
        layer: &dyn LinearLayer,
        u: Tensor<4>,
        r: &Tensor<4>,
        (signed, w_pos, w_neg): (&WeightStack, &Tensor<4>, &Tensor<4>),
        flip: bool,
        ctx: &RuleContext,
    ) -> Result<Tensor<4>> {
        let shape = u.dims();
        if self.beta == 0.0 {
            return Ok(share(layer, u, if flip { w_neg } else { w_pos }, r.clone()));
        }
        let mut parts = layer.forward_stack(u.clone(), signed).into_iter();
        let (Some(a), Some(n)) = (parts.next(), parts.next()) else {
            return Err(stack_error(ctx));
        };
        let (z_act, z_inh) = if flip { (n, a) } else { (a, n) };
        let act = safe_div(r.clone(), z_act).mul_scalar(self.alpha);
        let inh = safe_div(r.clone(), z_inh).mul_scalar(-self.beta);
        let shares = if flip { vec![inh, act] } else { vec![act, inh] };
        Ok(u * layer.transpose_stack(shares, signed, shape))
    }
}

impl Rule for AlphaBeta {
    fn name(&self) -> String {
        format!("LRP-α{}β{}", self.alpha, self.beta)
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        // [W⁺, |W⁻|], kept by the explainer between calls.
        let (signed, wp, wn) = signed_weights(layer, ctx)?;
        let weights = (signed.as_ref(), &wp, &wn);
        let out = self.branch(layer, pos(x.clone()), &r, weights, false, ctx)?;
        if ctx.input_nonnegative {
            return Ok(out);
        }
        // The x⁻ branch without reading the sign back: an all-zero branch adds 0.
        Ok(out + self.branch(layer, neg(x.clone()).neg(), &r, weights, true, ctx)?)
    }
}
