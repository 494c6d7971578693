//! Element-wise activations: Burn's `Relu6`, `Sigmoid`, `Tanh`, `Gelu`, `SiLU`, `HardSigmoid`,
//! `HardSwish`, `LeakyRelu` and `Softplus`, and [`Clamp`] (ONNX `Clip`), all under the identity
//! rule.
//!
//! **The identity rule** (AttnLRP, Achtibat et al., ICML 2024, §3.3; LXT's
//! `identity_rule_implicit`; Ali et al., ICML 2022, for GELU in transformers): an element-wise
//! non-linearity `y = f(x)` passes relevance unchanged, `R_x = R_y`. It needs no stabiliser and no
//! mask: where `f(x) = 0` the next layer's rule has already sent nothing, because its rule
//! multiplies by its input. It conserves exactly. LRP's ReLU step is the same rule, and RAP
//! extends to these activations the same way: the authors' code passes relevance through the ReLU
//! unchanged, and this crate does so through every element-wise activation (a documented
//! extension of RAP, which the paper defines on ReLU networks).

use super::{LayerType, Relevance, inputs_n, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::{AttribError, Result};
use burn::nn::activation::{Gelu, HardSigmoid, HardSwish, LeakyRelu, Relu6, SiLU, Sigmoid, Softplus, Tanh};
use burn::tensor::Tensor;

/// The identity rule's step: `R_x = R_y`.
fn identity(r: Tensor<4>) -> Result<Vec<Tensor<4>>> {
    Ok(vec![r])
}

macro_rules! identity_rule {
    ($ty:ty, $layer_type:expr, $what:literal) => {
        #[doc = concat!($what, " under the identity rule (`R_x = R_y`; its sources and why: [`Clamp`](crate::layers::Clamp)).")]
        ///
        /// # Shapes
        ///
        /// - input: any; output: the same
        impl Relevance for $ty {
            fn layer_type(&self) -> LayerType {
                $layer_type
            }

            fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
                let [x] = inputs_n::<1>(name, inputs)?;
                Ok(<$ty>::forward(self, x.clone()))
            }

            fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
                let [x] = inputs else { return None };
                Some(<$ty>::forward(self, x.clone()))
            }

            fn relevance(
                &self,
                _inputs: &[Tensor<4>],
                _output: &Tensor<4>,
                r: Tensor<4>,
                _rule: Option<&dyn Rule>,
                _ctx: &RuleContext,
            ) -> Result<Vec<Tensor<4>>> {
                identity(r)
            }
        }
    };
}

identity_rule!(Relu6, LayerType::Relu6, "ReLU6, `min(max(x, 0), 6)`,");
identity_rule!(Sigmoid, LayerType::Sigmoid, "The logistic sigmoid");
identity_rule!(Tanh, LayerType::Tanh, "The hyperbolic tangent");
identity_rule!(Gelu, LayerType::Gelu, "GELU (exact or tanh-approximated)");
identity_rule!(SiLU, LayerType::SiLU, "SiLU, `x·σ(x)`,");
identity_rule!(HardSigmoid, LayerType::HardSigmoid, "Hard sigmoid, `clamp(αx + β, 0, 1)`,");
identity_rule!(HardSwish, LayerType::HardSwish, "Hard swish, `x·relu6(x + 3)/6`,");
identity_rule!(LeakyRelu, LayerType::LeakyRelu, "Leaky ReLU");
identity_rule!(Softplus, LayerType::Softplus, "Softplus");

/// Clamping to `[min, max]` (ONNX `Clip`; `Clamp::new(0.0, 6.0)` is ReLU6), under the identity
/// rule, like every element-wise activation here.
///
/// **The identity rule** (AttnLRP, Achtibat et al., ICML 2024, §3.3; LXT's
/// `identity_rule_implicit`; Ali et al., ICML 2022, for GELU in transformers): an element-wise
/// non-linearity `y = f(x)` passes relevance unchanged, `R_x = R_y`. It needs no stabiliser and
/// no mask: where `f(x) = 0` the next layer's rule has already sent nothing, because it multiplies
/// by its input. It conserves exactly. LRP's ReLU step is the same rule, and RAP extends to these
/// activations the same way (the authors' code passes relevance through the ReLU unchanged; the
/// paper defines RAP on ReLU networks).
///
/// # Shapes
///
/// - input: any; output: the same
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clamp {
    min: f32,
    max: f32,
}

impl Clamp {
    /// Clamping to `[min, max]`; either bound may be infinite (none on that side). An error
    /// unless `min ≤ max` and neither is NaN.
    pub fn new(min: f32, max: f32) -> Result<Self> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(AttribError::InvalidParameter(format!(
                "Clamp: `min` = {min}, `max` = {max} are not allowed; expected min ≤ max, neither NaN"
            )));
        }
        Ok(Self { min, max })
    }

    /// The lower bound.
    pub fn min(&self) -> f32 {
        self.min
    }

    /// The upper bound.
    pub fn max(&self) -> f32 {
        self.max
    }
}

impl Relevance for Clamp {
    fn layer_type(&self) -> LayerType {
        LayerType::Clamp
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        if self.min.is_nan() || self.max.is_nan() || self.min > self.max {
            return Err(shape_error(name, "a clamp with min ≤ max", x.dims()));
        }
        let mut y = x.clone();
        if self.min > f32::NEG_INFINITY {
            y = y.clamp_min(self.min);
        }
        if self.max < f32::INFINITY {
            y = y.clamp_max(self.max);
        }
        Ok(y)
    }

    fn relevance(
        &self,
        _inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        _ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        identity(r)
    }
}
