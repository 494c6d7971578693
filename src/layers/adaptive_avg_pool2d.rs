//! [`burn::nn::pool::AdaptiveAvgPool2d`]: proportional (z-rule) relevance.

// Indexing is checked by construction here: the pooling matrix is indexed within the `out × len` buffer it allocates.
#![allow(clippy::indexing_slicing)]

use super::{LayerType, Layout, Relevance, inputs_n, keep_layout, shape_error, z_rule_pool};
use crate::base::{Rule, RuleContext};
use crate::error::Result;
use burn::nn::pool::AdaptiveAvgPool2d;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor, TensorData};

/// The pooling matrix `P [out, len]` of one axis: row `i` averages
/// `[⌊i·len/out⌋, ⌈(i+1)·len/out⌉)`, as PyTorch and Burn define adaptive pooling.
pub(crate) fn pooling_matrix(out: usize, len: usize, device: &Device) -> Tensor<2> {
    let mut m = vec![0f32; out * len];
    for i in 0..out {
        let start = (i * len) / out;
        let end = ((i + 1) * len).div_ceil(out);
        let inv = 1.0 / (end - start) as f32;
        for j in start..end {
            m[i * len + j] = inv;
        }
    }
    Tensor::from_data(TensorData::new(m, [out, len]), device)
}

/// Adaptive average pooling to a fixed output size.
///
/// Relevance is shared in proportion to each input's contribution, as for
/// [`AvgPool2d`](burn::nn::pool::AvgPool2d). The adjoint is computed exactly from the pooling
/// matrices of the two axes, `Pₕᵀ S P_w`, so any output size works.
///
/// # Shapes
///
/// - input: `[B, C, H, W]`
/// - output: `[B, C, oh, ow]`
impl Relevance for AdaptiveAvgPool2d {
    fn layer_type(&self) -> LayerType {
        LayerType::AdaptiveAvgPool2d
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(self.forward(x.clone()))
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "adaptive average pooling takes", &[Layout::Spatial], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [input] = inputs_n::<1>(name, inputs)?;
        let dims = input.dims();
        let [oh, ow] = self.output_size;
        if oh == 0 || ow == 0 || dims[2] == 0 || dims[3] == 0 {
            return Err(shape_error(name, format!("a non-empty [B, C, H, W] pooled to {oh}x{ow}"), dims));
        }
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &[dims[0], dims[1], oh, ow])?;
        Ok(adaptive_avg_pool2d(input.clone(), self.output_size))
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
        let [b, c, h, w] = x.dims();
        let [oh, ow] = self.output_size;
        let device = x.device();
        let ph = pooling_matrix(oh, h, &device).transpose().reshape([1, 1, h, oh]).expand([b, c, h, oh]);
        let pw = pooling_matrix(ow, w, &device).reshape([1, 1, ow, w]).expand([b, c, ow, w]);
        Ok(vec![z_rule_pool(x, output, r, ctx.sharing, |s| ph.matmul(s.matmul(pw)))])
    }
}
