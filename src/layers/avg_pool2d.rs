//! [`burn::nn::pool::AvgPool2d`]: proportional (z-rule) relevance.

use super::conv2d::padding_of;
use super::{LayerType, Relevance, expect_inputs, shape_error, z_rule_pool};
use crate::error::Result;
use crate::rules::{Rule, RuleContext};
use burn::nn::pool::AvgPool2d;
use burn::tensor::Tensor;
use burn::tensor::module::{avg_pool2d, avg_pool2d_backward};
use burn::tensor::ops::AvgPoolOptions;

/// Average pooling (padding, `count_include_pad`, `ceil_mode`).
///
/// Relevance is shared in proportion to each input's contribution:
/// `Rᵢ = xᵢ Σ_{j ∋ i} Rⱼ / (|windowⱼ| Zⱼ)`, zero where `Zⱼ = 0` (the reference's safe divide), or
/// with Zennit's Norm stabiliser `Zⱼ + e·sgn0(Zⱼ)` ([`Sharing`](crate::rules::Sharing)).
///
/// # Shapes
///
/// - input: `[B, C, H, W]`
/// - output: `[B, C, H', W']`
impl Relevance for AvgPool2d {
    fn layer_type(&self) -> LayerType {
        LayerType::AvgPool2d
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        expect_inputs(name, inputs, 1)?;
        let dims = inputs[0].dims();
        let k = self.kernel_size;
        let Some(padding) = padding_of(&self.padding, k) else {
            return Err(shape_error(name, "a pool with symmetric padding", dims));
        };
        if dims[2] + 2 * padding[0] < k[0] || dims[3] + 2 * padding[1] < k[1] {
            return Err(shape_error(name, format!("[B, C, H, W] with H, W ≥ the {}x{} window", k[0], k[1]), dims));
        }
        let opts = AvgPoolOptions::new(k)
            .with_stride(self.stride)
            .with_padding(padding)
            .with_count_include_pad(self.count_include_pad)
            .with_ceil_mode(self.ceil_mode);
        Ok(avg_pool2d(inputs[0].clone(), opts))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let x = &inputs[0];
        let padding = padding_of(&self.padding, self.kernel_size).expect("checked in forward");
        Ok(vec![z_rule_pool(x, output, r, ctx.sharing, |s| {
            avg_pool2d_backward(
                x.clone(),
                s,
                self.kernel_size,
                self.stride,
                padding,
                self.count_include_pad,
                self.ceil_mode,
            )
        })])
    }
}
