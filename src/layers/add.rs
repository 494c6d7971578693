//! Residual Add: `y = a + b`.

use super::{LayerType, Relevance, expect_inputs, shape_error};
use crate::error::Result;
use crate::rules::{Rule, RuleContext};
use burn::tensor::Tensor;

/// Elementwise sum of two branches (a residual connection).
///
/// Relevance is split in proportion to each branch's contribution, as the RAP reference does:
/// `R_a = a · sd(R, a + b)`, `R_b = b · sd(R, a + b)`; under Zennit's Norm rule
/// ([`Sharing::Norm`](crate::rules::Sharing)) the divide is `R ⊘ (a + b + e·sgn0(a + b))`. The
/// two shares sum to `R` wherever `a + b ≠ 0` (up to the stabiliser); where `a` and `b` have
/// opposite signs a share can be negative or larger than `R`.
///
/// # Shapes
///
/// - inputs: `a` and `b`, both `[B, C, H, W]`
/// - output: `[B, C, H, W]`
#[derive(Debug, Clone, Copy, Default)]
pub struct Add;

impl Relevance for Add {
    fn layer_type(&self) -> LayerType {
        LayerType::Add
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        expect_inputs(name, inputs, 2)?;
        let (a, b) = (inputs[0].dims(), inputs[1].dims());
        if a != b {
            return Err(shape_error(name, format!("both branches of shape {a:?}"), b));
        }
        Ok(inputs[0].clone() + inputs[1].clone())
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let s = ctx.sharing.divide(r, output.clone());
        Ok(vec![inputs[0].clone() * s.clone(), inputs[1].clone() * s])
    }
}
