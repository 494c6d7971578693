//! LRP-αβ.

use super::{Rule, RuleContext, Stabilizer, add_bias, share, signed_products as products, signed_weights};
use crate::base::{LinearLayer, WeightStack};
use crate::error::{AttribError, Result};
use crate::tensor::{neg, pos, safe_div};
use burn::tensor::Tensor;

/// LRP-αβ with `α − β = 1`, in either reference's form.
///
/// **The authors' code** ([`AlphaBeta::new`]) normalises the x⁺ and x⁻ parts separately and
/// has no bias and no ε (`sd` is the safe divide):
///
/// ```text
/// act = x⁺ ⊙ W⁺ᵀ sd(R, W⁺x⁺) + x⁻ ⊙ W⁻ᵀ sd(R, W⁻x⁻)
/// inh = x⁺ ⊙ W⁻ᵀ sd(R, W⁻x⁺) + x⁻ ⊙ W⁺ᵀ sd(R, W⁺x⁻)
/// R_in = α · act − β · inh
/// ```
///
/// so an input of mixed sign returns up to twice the relevance.
///
/// **Zennit 0.5.1** ([`AlphaBeta::zennit`]) pools the positive contributions in one
/// denominator and the negative ones in another, each with its share of the bias, stabilised by
/// `z + e·sgn0(z)` (`sgn0(0) = +1`, `e = 1e-6`):
///
/// ```text
/// z⁺ = W⁺x⁺ + W⁻x⁻ + b⁺        z⁻ = W⁻x⁺ + W⁺x⁻ + b⁻
/// R_in = α (x⁺ ⊙ W⁺ᵀ s⁺ + x⁻ ⊙ W⁻ᵀ s⁺) − β (x⁺ ⊙ W⁻ᵀ s⁻ + x⁻ ⊙ W⁺ᵀ s⁻),   s± = R ⊘ stab(z±)
/// ```
///
/// Where `z⁻ = 0` an output passes `α·R`.
///
/// In both forms the x⁻ terms are skipped when the graph shows the input non-negative (after a
/// ReLU); otherwise they are computed (zero where `x` has no negative entry), never by reading
/// the sign back from the device. The products of one input sign are one product over the
/// stacked `[W⁺; |W⁻|]` and one adjoint over the stacked shares.
///
/// Conservation (authors' form): for `x ≥ 0`, `Σ R_in = α Σ_j R_j 1[z⁺_j ≠ 0] − β Σ_j R_j
/// 1[z⁻_j ≠ 0]`, which is `Σ R` where every `z⁺_j` and `z⁻_j` is nonzero. Zennit's form: `Σ R_in
/// = Σ_j R_j (α (z⁺_j − b⁺_j)/stab(z⁺_j) − β (z⁻_j − b⁻_j)/stab(z⁻_j))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlphaBeta {
    alpha: f64,
    beta: f64,
    /// `Some(e)`: Zennit's pooled form with bias shares and stabiliser `e`.
    pooled: Option<f64>,
}

impl AlphaBeta {
    /// LRP-αβ as the authors' code computes it; an error unless `α ≥ 1`, `β ≥ 0` and
    /// `α − β = 1`, all finite.
    pub fn new(alpha: f64, beta: f64) -> Result<Self> {
        if alpha.is_finite() && beta.is_finite() && alpha >= 1.0 && beta >= 0.0 && ((alpha - beta) - 1.0).abs() < 1e-12
        {
            Ok(Self { alpha, beta, pooled: None })
        } else {
            Err(AttribError::InvalidParameter(format!(
                "LRP-αβ needs finite α ≥ 1, β ≥ 0 and α − β = 1; got α = {alpha}, β = {beta}"
            )))
        }
    }

    /// LRP-αβ as Zennit 0.5.1's `AlphaBeta` computes it (pooled signs, bias shares, stabiliser
    /// `1e-6`); the same conditions on α and β.
    pub fn zennit(alpha: f64, beta: f64) -> Result<Self> {
        Ok(Self { pooled: Some(1e-6), ..Self::new(alpha, beta)? })
    }

    /// Zennit's `AlphaBeta(2, 1)`, valid by construction.
    pub(crate) fn zennit_alpha2_beta1() -> Self {
        Self { alpha: 2.0, beta: 1.0, pooled: Some(1e-6) }
    }

    /// The weight α of the activating part.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The weight β of the inhibiting part.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// Whether this is Zennit's pooled form.
    pub fn is_zennit(&self) -> bool {
        self.pooled.is_some()
    }

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
        let (a, n) = products(layer, u.clone(), signed, ctx)?;
        let (z_act, z_inh) = if flip { (n, a) } else { (a, n) };
        let act = safe_div(r.clone(), z_act).mul_scalar(self.alpha);
        let inh = safe_div(r.clone(), z_inh).mul_scalar(-self.beta);
        let shares = if flip { vec![inh, act] } else { vec![act, inh] };
        Ok(u * layer.transpose_stack(shares, signed, shape))
    }

    /// Zennit's pooled form.
    fn pooled(
        &self,
        layer: &dyn LinearLayer,
        x: &Tensor<4>,
        r: Tensor<4>,
        e: f64,
        ctx: &RuleContext,
    ) -> Result<Tensor<4>> {
        let (signed, _, _) = signed_weights(layer, ctx)?;
        let signed = signed.as_ref();
        let shape = x.dims();
        let u = pos(x.clone());
        // [W⁺u, |W⁻|u]; with v = |x⁻|: W⁻x⁻ = |W⁻|v and W⁺x⁻ = −W⁺v.
        let (pu, nu) = products(layer, u.clone(), signed, ctx)?;
        let (mut z_pos, mut z_neg) = (pu, nu.neg());
        let v = if ctx.input_nonnegative {
            None
        } else {
            let v = neg(x.clone()).neg();
            let (pv, nv) = products(layer, v.clone(), signed, ctx)?;
            z_pos = z_pos + nv;
            z_neg = z_neg - pv;
            Some(v)
        };
        if let Some(b) = layer.bias() {
            z_pos = add_bias(z_pos, pos(b.clone()));
            z_neg = add_bias(z_neg, neg(b));
        }
        let stab = Stabilizer::Epsilon(e);
        let s_pos = stab.divide(r.clone(), z_pos).mul_scalar(self.alpha);
        // −β (x⁺ ⊙ W⁻ᵀ s⁻) = β x⁺ ⊙ |W⁻|ᵀ s⁻, and −β (x⁻ ⊙ W⁺ᵀ s⁻) = β v ⊙ W⁺ᵀ s⁻.
        let s_neg = stab.divide(r, z_neg).mul_scalar(self.beta);
        let out = u * layer.transpose_stack(vec![s_pos.clone(), s_neg.clone()], signed, shape);
        Ok(match v {
            Some(v) => out + v * layer.transpose_stack(vec![s_neg, s_pos], signed, shape),
            None => out,
        })
    }
}

impl Rule for AlphaBeta {
    fn name(&self) -> String {
        match self.pooled {
            Some(_) => format!("LRP-α{}β{} (Zennit)", self.alpha, self.beta),
            None => format!("LRP-α{}β{}", self.alpha, self.beta),
        }
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        if let Some(e) = self.pooled {
            return self.pooled(layer, x, r, e, ctx);
        }
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
