//! [`burn::nn::Relu`]: relevance passes through unchanged.

use super::{LayerType, Relevance, inputs_n};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::nn::Relu;
use burn::tensor::Tensor;

/// ReLU. Relevance passes through unchanged (as in LRP and the RAP reference); the zeros of the
/// forward pass already stop relevance at the next linear layer below.
///
/// # Shapes
///
/// - input: any `[B, C, H, W]`; output: the same
impl Relevance for Relu {
    fn layer_type(&self) -> LayerType {
        LayerType::Relu
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(self.forward(x.clone()))
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        Ok(input.clone().clamp_min(0.0))
    }

    fn relevance(
        &self,
        _inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        _ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        Ok(vec![r])
    }
}
