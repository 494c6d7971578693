//! LRP-γ.

use super::{Rule, RuleContext, Stabilizer, z_step};
use crate::error::{AttribError, Result};
use crate::layers::LinearLayer;
use crate::tensor::pos;
use burn::tensor::Tensor;

/// LRP-γ: the weights (and bias) favour positive contributions, `ρ(w) = w + γ w⁺`, with an ε
/// stabiliser: `R_i = Σ_j x_i ρ(w_ji) / (Σ_i x_i ρ(w_ji) + ρ(b_j) + ε) · R_j`.
///
/// Conservation: `Σ R_in = Σ_j R_j (z_j − ρ(b_j)) / (z_j + ε sign z_j)` (bias and ε absorbed).
/// γ = 0 is LRP-ε; γ → ∞ approaches Z⁺ on non-negative inputs.
#[derive(Debug, Clone, Copy)]
pub struct Gamma {
    /// Weight of the positive part (≥ 0).
    pub gamma: f64,
    /// Stabiliser.
    pub epsilon: f64,
}

impl Gamma {
    /// LRP-γ; an error unless `γ ≥ 0` and `ε ≥ 0`, both finite.
    pub fn new(gamma: f64, epsilon: f64) -> Result<Self> {
        if gamma >= 0.0 && gamma.is_finite() && epsilon >= 0.0 && epsilon.is_finite() {
            Ok(Self { gamma, epsilon })
        } else {
            Err(AttribError::InvalidParameter(format!("LRP-γ needs γ ≥ 0 and ε ≥ 0; got γ = {gamma}, ε = {epsilon}")))
        }
    }
}

impl Default for Gamma {
    fn default() -> Self {
        Self { gamma: 0.25, epsilon: 1e-6 }
    }
}

impl Rule for Gamma {
    fn name(&self) -> String {
        format!("LRP-γ({})", self.gamma)
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, _: &RuleContext) -> Result<Tensor<4>> {
        let w = layer.weight();
        let rho = w.clone() + pos(w).mul_scalar(self.gamma);
        let bias = layer.bias().map(|b| b.clone() + b.clamp_min(0.0).mul_scalar(self.gamma));
        let stab = if self.epsilon > 0.0 { Stabilizer::Epsilon(self.epsilon) } else { Stabilizer::Safe };
        Ok(z_step(layer, x.clone(), &rho, bias, r, stab))
    }
}
