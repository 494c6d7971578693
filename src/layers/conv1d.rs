//! [`burn::nn::conv::Conv1d`]: 1-D convolution over the tokens of a sequence (a text CNN, a
//! signal), as the 2-D convolution with a `k × 1` kernel it is on the held `[B, D, T, 1]` form.

use super::{LayerType, Layout, LinearLayer, Relevance, WeightStack, inputs_n, keep_layout, shape_error};
use crate::error::Result;
use burn::module::Param;
use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::{PaddingConfig1d, PaddingConfig2d};
use burn::tensor::Tensor;

/// The symmetric padding of a 1-D convolution, or `None` for an asymmetric one (Burn's `Same`
/// with an even kernel).
fn padding_1d(conv: &Conv1d) -> Option<usize> {
    match conv.padding {
        PaddingConfig1d::Valid => Some(0),
        PaddingConfig1d::Explicit(l, r) if l == r => Some(l),
        PaddingConfig1d::Same if conv.kernel_size % 2 == 1 => Some(conv.kernel_size / 2),
        _ => None,
    }
}

/// The `k × 1` 2-D convolution that computes `conv` on `[B, D, T, 1]` (same parameter ids, so
/// the weight cache keys stay the layer's own).
fn as_conv2d(conv: &Conv1d) -> Conv2d {
    let [o, i, k] = conv.weight.dims();
    let p = padding_1d(conv).unwrap_or(0);
    Conv2d {
        weight: Param::initialized(conv.weight.id, conv.weight.val().reshape([o, i, k, 1])),
        bias: conv.bias.clone(),
        stride: [conv.stride, 1],
        kernel_size: [k, 1],
        dilation: [conv.dilation, 1],
        groups: conv.groups,
        padding: PaddingConfig2d::Explicit(p, 0, p, 0),
    }
}

/// 1-D convolution over the tokens of a `[B, T, D]` sequence with `D` input channels: Burn's
/// `conv1d.forward(x.swap_dims(1, 2)).swap_dims(1, 2)`, the text-CNN pattern (a signal
/// `[B, C, L]` is given as `[B, L, C]`). Held as `[B, D, T, 1]`, it is the 2-D convolution with a
/// `k × 1` kernel, stride, padding and dilation along the tokens and the same groups, so every
/// rule of the composite applies to it as to a Conv2d (rule-facing weight
/// `[out, in/groups, k, 1]`); the presets treat it as a convolution.
///
/// # Shapes
///
/// - input: `[B, T, D_in]`; output: `[B, T', D_out]`
impl LinearLayer for Conv1d {
    fn weight(&self) -> Tensor<4> {
        let [o, i, k] = self.weight.dims();
        self.weight.val().reshape([o, i, k, 1])
    }

    fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        as_conv2d(self).forward_with(x, weight, bias)
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        as_conv2d(self).transpose_with(y, weight, x_shape)
    }

    fn stack(&self, parts: Vec<Tensor<4>>) -> WeightStack {
        as_conv2d(self).stack(parts)
    }

    fn forward_stack(&self, x: Tensor<4>, stack: &WeightStack) -> Vec<Tensor<4>> {
        as_conv2d(self).forward_stack(x, stack)
    }

    fn transpose_stack(&self, ys: Vec<Tensor<4>>, stack: &WeightStack, x_shape: [usize; 4]) -> Tensor<4> {
        as_conv2d(self).transpose_stack(ys, stack, x_shape)
    }
}

impl Relevance for Conv1d {
    fn layer_type(&self) -> LayerType {
        LayerType::Conv1d
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[Some(self.weight.id.val()), self.bias.as_ref().map(|b| b.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(
            name,
            "Conv1d convolves the tokens of a [batch, tokens, channels] sequence; it takes",
            &[Layout::Sequence],
            inputs,
            dims,
        )
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let dims = x.dims();
        if padding_1d(self).is_none() {
            return Err(shape_error(
                name,
                "a convolution with symmetric padding (asymmetric padding is not supported)",
                dims,
            ));
        }
        if dims[3] != 1 {
            return Err(shape_error(name, "a [batch, tokens, channels] sequence", dims));
        }
        Relevance::forward(&as_conv2d(self), name, inputs)
    }

    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}
