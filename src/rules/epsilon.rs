//! LRP-ε.

use super::{Rule, RuleContext, Stabilizer, z_step};
use crate::base::LinearLayer;
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// LRP-ε: `R_i = Σ_j x_i w_ji / (z_j + ε·sign(z_j)) · R_j`, `sign(0) = 1`.
///
/// Conservation: `Σ_i R_i = Σ_j R_j (z_j − b_j)/(z_j + ε sign z_j)`; the difference to `Σ R`
/// is the absorbed part (ε and the bias), and it vanishes as ε → 0 for a bias-free layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epsilon {
    epsilon: f64,
}

impl Epsilon {
    /// LRP-ε with the given ε; an error unless `ε > 0` and finite.
    pub fn new(epsilon: f64) -> Result<Self> {
        if epsilon > 0.0 && epsilon.is_finite() {
            Ok(Self { epsilon })
        } else {
            Err(AttribError::InvalidParameter(format!(
                "LRP-ε: `epsilon` = {epsilon} is not allowed; expected a finite number > 0"
            )))
        }
    }

    /// The stabiliser ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }
}

impl Default for Epsilon {
    fn default() -> Self {
        Self { epsilon: 1e-6 }
    }
}

impl Rule for Epsilon {
    fn name(&self) -> String {
        format!("LRP-ε({})", self.epsilon)
    }

    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, _: &RuleContext) -> Result<Tensor<4>> {
        let stab = Stabilizer::Epsilon(self.epsilon);
        Ok(z_step(layer, x.clone(), &layer.weight(), layer.bias(), r, stab))
    }
}
