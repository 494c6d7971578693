//! [`burn::nn::Dropout`]: the identity at inference.

use super::{LayerType, Relevance, inputs_n};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::nn::Dropout;
use burn::tensor::Tensor;

/// Dropout, always the identity here (explanations are made at inference).
///
/// # Shapes
///
/// - input: any `[B, C, H, W]`; output: the same
impl Relevance for Dropout {
    fn layer_type(&self) -> LayerType {
        LayerType::Dropout
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        Ok(input.clone())
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
