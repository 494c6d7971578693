//! Residual Add: `y = a + b`.

use super::{LayerType, Relevance, inputs_n, shape_error};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
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
        let [a, b] = inputs_n::<2>(name, inputs)?;
        let (da, db) = (a.dims(), b.dims());
        if da != db {
            return Err(shape_error(name, format!("both branches of shape {da:?}"), db));
        }
        Ok(a.clone() + b.clone())
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [in_a, in_b] = inputs_n::<2>(ctx.name, inputs)?;
        let s = ctx.sharing.divide(r, output.clone());
        Ok(vec![in_a.clone() * s.clone(), in_b.clone() * s])
    }
}
