//! [`burn::nn::pool::AvgPool2d`]: proportional (z-rule) relevance.

use super::conv2d::padding_of;
use super::{LayerType, Layout, Relevance, Window, inputs_n, keep_layout, shape_error, z_rule_pool};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
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

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(self.forward(x.clone()))
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "average pooling takes", &[Layout::Spatial], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        let dims = input.dims();
        let k = self.kernel_size;
        let Some(padding) = padding_of(&self.padding, k) else {
            return Err(shape_error(name, "a pool with symmetric padding", dims));
        };
        let window = Window { kernel: k, stride: self.stride, padding, dilation: [1, 1], ceil_mode: self.ceil_mode };
        window.check(name, dims, dims[1])?;
        let opts = AvgPoolOptions::new(k)
            .with_stride(self.stride)
            .with_padding(padding)
            .with_count_include_pad(self.count_include_pad)
            .with_ceil_mode(self.ceil_mode);
        Ok(avg_pool2d(input.clone(), opts))
    }

    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        _rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let [x] = inputs_n::<1>(ctx.name, inputs)?;
        let Some(padding) = padding_of(&self.padding, self.kernel_size) else {
            return Err(shape_error(ctx.name, "a pool with symmetric padding", x.dims()));
        };
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
