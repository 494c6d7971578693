//! LRP-γ.

use super::{Rule, RuleContext, Stabilizer, add_bias, signed_products, signed_weights, z_step};
use crate::base::LinearLayer;
use crate::error::{AttribError, Result};
use crate::tensor::{neg, pos};
use burn::tensor::Tensor;

/// LRP-γ: the weights favour the contributions that agree in sign with the output.
///
/// **Generalised** (Zennit 0.5.1's `Gamma`, [`Gamma::new`], the default): with
/// `W↑ = W + γW⁺`, `W↓ = W + γW⁻`, `b↑ = b + γb⁺`, `b↓ = b + γb⁻` and the plain output
/// `z = W ⋆ x + b`,
///
/// ```text
/// z↑ = W↑ ⋆ x⁺ + W↓ ⋆ x⁻ + b↑          z↓ = W↓ ⋆ x⁺ + W↑ ⋆ x⁻ + b↓
/// s↑ = 1[z > 0] ⊙ R ⊘ stab(z↑)          s↓ = 1[z < 0] ⊙ R ⊘ stab(z↓)
/// R_in = x⁺ ⊙ (W↑ᵀ s↑ + W↓ᵀ s↓) + x⁻ ⊙ (W↓ᵀ s↑ + W↑ᵀ s↓)
/// ```
///
/// with `stab(z) = z + e·sgn0(z)`, `sgn0(0) = +1`, `e = 1e-6`. Outputs with `z = 0` pass
/// nothing. The `z < 0` branch matters where an output is not followed by a ReLU (the last
/// convolution of a residual branch).
///
/// **Classic** ([`Gamma::classic`]): `ρ(w) = w + γw⁺` and `ρ(b) = b + γb⁺` on every output,
/// `R_i = Σ_j x_i ρ(w_ji) / (Σ_i x_i ρ(w_ji) + ρ(b_j) + ε·sgn0) · R_j`. On outputs followed by a
/// ReLU with a non-negative input the two agree.
///
/// Conservation (generalised): `Σ R_in = Σ_j R_j (1[z_j>0](z↑_j − b↑_j)/stab(z↑_j) + 1[z_j<0](z↓_j −
/// b↓_j)/stab(z↓_j))`, i.e. `Σ R` up to the bias share and the stabiliser where `z_j ≠ 0`.
/// γ = 0 is LRP-ε; γ → ∞ approaches Z⁺ on non-negative inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gamma {
    gamma: f64,
    stabilizer: f64,
    generalized: bool,
}

impl Gamma {
    /// Zennit's generalised LRP-γ with stabiliser `1e-6`; an error unless `γ ≥ 0` and finite.
    pub fn new(gamma: f64) -> Result<Self> {
        check("gamma", gamma, true)?;
        Ok(Self { gamma, stabilizer: 1e-6, generalized: true })
    }

    /// The classic, positive-output-only LRP-γ with stabiliser `ε`; an error unless `γ ≥ 0` and
    /// `ε > 0`, both finite.
    pub fn classic(gamma: f64, epsilon: f64) -> Result<Self> {
        check("gamma", gamma, true)?;
        check("epsilon", epsilon, false)?;
        Ok(Self { gamma, stabilizer: epsilon, generalized: false })
    }

    /// Sets the stabiliser `e` (> 0, finite).
    pub fn with_stabilizer(mut self, stabilizer: f64) -> Result<Self> {
        check("stabilizer", stabilizer, false)?;
        self.stabilizer = stabilizer;
        Ok(self)
    }

    /// γ.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The stabiliser `e`.
    pub fn stabilizer(&self) -> f64 {
        self.stabilizer
    }

    /// Whether this is the generalised (two-branch) form.
    pub fn is_generalized(&self) -> bool {
        self.generalized
    }
}

fn check(field: &str, value: f64, zero_ok: bool) -> Result<()> {
    if value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0)) {
        Ok(())
    } else {
        let allowed = if zero_ok { "a finite value ≥ 0" } else { "a finite value > 0" };
        Err(AttribError::InvalidParameter(format!("LRP-γ: `{field}` = {value} is not allowed; expected {allowed}")))
    }
}

impl Default for Gamma {
    fn default() -> Self {
        Self { gamma: 0.25, stabilizer: 1e-6, generalized: true }
    }
}

impl Gamma {
    fn generalized(
        &self,
        layer: &dyn LinearLayer,
        x: &Tensor<4>,
        r: Tensor<4>,
        ctx: &RuleContext,
    ) -> Result<Tensor<4>> {
        let (signed, _, _) = signed_weights(layer, ctx)?;
        let signed = signed.as_ref();
        let g = self.gamma;
        let shape = x.dims();
        let products = |u: Tensor<4>| signed_products(layer, u, signed, ctx);
        // With P = W⁺, N = |W⁻|: W = P − N, W↑ = (1+γ)P − N, W↓ = P − (1+γ)N.
        let u = pos(x.clone());
        let (pu, nu) = products(u.clone())?;
        // The plain output decides the branch, computed as the layer computes it (not from the
        // signed parts, whose rounding could flip the sign of an output near 0).
        let z = layer.forward_with(x.clone(), &layer.weight(), layer.bias());
        let mut z_up = pu.clone().mul_scalar(1.0 + g) - nu.clone();
        let mut z_down = pu - nu.mul_scalar(1.0 + g);
        // With v = |x⁻| = −x⁻: W ⋆ x⁻ = N⋆v − P⋆v, W↓ ⋆ x⁻ = (1+γ)N⋆v − P⋆v, W↑ ⋆ x⁻ = N⋆v − (1+γ)P⋆v.
        let v = if ctx.input_nonnegative {
            None
        } else {
            let v = neg(x.clone()).neg();
            let (pv, nv) = products(v.clone())?;
            z_up = z_up + nv.clone().mul_scalar(1.0 + g) - pv.clone();
            z_down = z_down + nv - pv.mul_scalar(1.0 + g);
            Some(v)
        };
        if let Some(b) = layer.bias() {
            z_up = add_bias(z_up, b.clone() + pos(b.clone()).mul_scalar(g));
            z_down = add_bias(z_down, b.clone() + neg(b).mul_scalar(g));
        }
        let stab = Stabilizer::Epsilon(self.stabilizer);
        let s_up = stab.divide(r.clone(), z_up).mask_fill(z.clone().lower_equal_elem(0.0), 0.0);
        let s_down = stab.divide(r, z_down).mask_fill(z.greater_equal_elem(0.0), 0.0);
        // x⁺ ⊙ (W↑ᵀs↑ + W↓ᵀs↓) = x⁺ ⊙ (Pᵀc − Nᵀa), x⁻ ⊙ (W↓ᵀs↑ + W↑ᵀs↓) = v ⊙ (Nᵀc − Pᵀa),
        // with c = (1+γ)s↑ + s↓ and a = s↑ + (1+γ)s↓.
        let c = s_up.clone().mul_scalar(1.0 + g) + s_down.clone();
        let a = s_up + s_down.mul_scalar(1.0 + g);
        let out = u * layer.transpose_stack(vec![c.clone(), a.clone().neg()], signed, shape);
        Ok(match v {
            Some(v) => out + v * layer.transpose_stack(vec![a.neg(), c], signed, shape),
            None => out,
        })
    }
}

impl Rule for Gamma {
    fn name(&self) -> String {
        if self.generalized { format!("LRP-γ({})", self.gamma) } else { format!("LRP-γ({}, classic)", self.gamma) }
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>> {
        if self.generalized {
            return self.generalized(layer, x, r, ctx);
        }
        let w = layer.weight();
        let rho = w.clone() + pos(w).mul_scalar(self.gamma);
        let bias = layer.bias().map(|b| b.clone() + pos(b).mul_scalar(self.gamma));
        Ok(z_step(layer, x.clone(), &rho, bias, r, Stabilizer::Epsilon(self.stabilizer)))
    }
}
