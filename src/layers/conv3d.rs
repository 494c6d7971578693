//! [`burn::nn::conv::Conv3d`]: 3-D convolution over a volume held as `[B, C·D, H, W]`.

// Indexing is checked by construction here: indices are the three axes of fixed-size arrays.
#![allow(clippy::indexing_slicing)]

use super::{LayerType, Layout, LinearLayer, Relevance, inputs_n, keep_layout, shape_error};
use crate::error::Result;
use burn::nn::PaddingConfig3d;
use burn::nn::conv::Conv3d;
use burn::tensor::Tensor;
use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// Burn's own padding of `conv` for an input of `size` `[D, H, W]` (its `Same` depends on the
/// size), or `None` where Burn would pad one side more than the other (it panics there).
fn padding_for(conv: &Conv3d, size: [usize; 3]) -> Option<[usize; 3]> {
    match conv.padding {
        PaddingConfig3d::Valid => Some([0; 3]),
        PaddingConfig3d::Explicit(d, h, w) => Some([d, h, w]),
        PaddingConfig3d::Same => {
            let mut pad = [0; 3];
            for a in 0..3 {
                let (k, s) = (conv.kernel_size[a], conv.stride[a].max(1));
                let out = size[a].div_ceil(s);
                let total = if out > 0 { ((out - 1) * s + k).saturating_sub(size[a]) } else { 0 };
                if total % 2 != 0 {
                    return None;
                }
                pad[a] = total / 2;
            }
            Some(pad)
        }
    }
}

/// The input channel count of `conv` (all groups).
fn in_channels(conv: &Conv3d) -> usize {
    conv.weight.dims()[1] * conv.groups
}

/// `[B, C·D, H, W]` as `[B, C, D, H, W]` for `c` channels (`c` divides axis 1; checked by the
/// caller).
fn unfold(x: Tensor<4>, c: usize) -> Tensor<5> {
    let [b, cd, h, w] = x.dims();
    x.reshape([b, c, cd / c.max(1), h, w])
}

/// `[B, C, D, H, W]` as `[B, C·D, H, W]`.
fn fold(x: Tensor<5>) -> Tensor<4> {
    let [b, c, d, h, w] = x.dims();
    x.reshape([b, c * d, h, w])
}

/// The rule-facing rank-4 weight `[out, in/groups, kd·kh, kw]` back in Burn's rank 5.
fn weight5(conv: &Conv3d, weight: &Tensor<4>) -> Tensor<5> {
    let [o, i, _, _] = weight.dims();
    let [kd, kh, kw] = conv.kernel_size;
    weight.clone().reshape([o, i, kd, kh, kw])
}

/// The output `[D', H', W']` of `conv` on a volume `[D, H, W]` with `padding`, or `None` where
/// the window does not fit.
fn output_size(conv: &Conv3d, size: [usize; 3], padding: [usize; 3]) -> Option<[usize; 3]> {
    let mut out = [0; 3];
    for a in 0..3 {
        let (k, s, dil) = (conv.kernel_size[a], conv.stride[a], conv.dilation[a]);
        if k == 0 || s == 0 || dil == 0 {
            return None;
        }
        let padded = size[a].saturating_add(padding[a].saturating_mul(2));
        let span = dil.saturating_mul(k - 1).saturating_add(1);
        out[a] = padded.checked_sub(span)? / s + 1;
    }
    Some(out)
}

/// The geometry of `conv` on a held volume `dims` (`[B, C·D, H, W]`): the input depth, the
/// padding and the output `[D', H', W']`, or the error that names the layer.
fn geometry(conv: &Conv3d, name: &str, dims: [usize; 4]) -> Result<(usize, [usize; 3], [usize; 3])> {
    let c = in_channels(conv);
    if c == 0 || !dims[1].is_multiple_of(c) {
        return Err(shape_error(name, format!("a volume [B, {c}, D, H, W] (held as [B, {c}·D, H, W])"), dims));
    }
    let depth = dims[1] / c;
    let size = [depth, dims[2], dims[3]];
    let padding = padding_for(conv, size).ok_or_else(|| {
        shape_error(name, "a convolution with symmetric padding (Burn's `Same` pads one side more here)", dims)
    })?;
    let out = output_size(conv, size, padding).ok_or_else(|| {
        shape_error(
            name,
            format!(
                "a volume large enough for the {:?} window (stride {:?}, dilation {:?}, padding {padding:?})",
                conv.kernel_size, conv.stride, conv.dilation
            ),
            dims,
        )
    })?;
    Ok((depth, padding, out))
}

/// 3-D convolution.
///
/// The volume `[B, C, D, H, W]` is held as `[B, C·D, H, W]` ([`Layout::Volume`]); the layer
/// unfolds it with its own input channel count. The rule-facing weight is Burn's
/// `[out, in/groups, kd, kh, kw]` as `[out, in/groups, kd·kh, kw]`, so rules modify it
/// elementwise like any other. The adjoint is a transposed 3-D convolution with the output
/// padding that restores the input size.
///
/// # Shapes
///
/// - input: `[B, C_in, D, H, W]`, held as `[B, C_in·D, H, W]`
/// - output: `[B, C_out, D', H', W']`, held as `[B, C_out·D', H', W']`
impl LinearLayer for Conv3d {
    fn weight(&self) -> Tensor<4> {
        let [o, i, kd, kh, kw] = self.weight.dims();
        self.weight.val().reshape([o, i, kd * kh, kw])
    }

    fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    fn weight_dims(&self) -> [usize; 4] {
        let [o, i, kd, kh, kw] = self.weight.dims();
        [o, i, kd * kh, kw]
    }

    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let x = unfold(x, in_channels(self));
        let [_, _, d, h, w] = x.dims();
        let padding = padding_for(self, [d, h, w]).unwrap_or([0; 3]);
        fold(conv3d(x, weight5(self, weight), bias, ConvOptions::new(self.stride, padding, self.dilation, self.groups)))
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        let c = in_channels(self).max(1);
        let size = [x_shape[1] / c, x_shape[2], x_shape[3]];
        let padding = padding_for(self, size).unwrap_or([0; 3]);
        let [o, _, _, _] = weight.dims();
        let y = unfold(y, o);
        let [_, _, od, oh, ow] = y.dims();
        let out = [od, oh, ow];
        let mut out_pad = [0usize; 3];
        for a in 0..3 {
            let full = (out[a].max(1) - 1) * self.stride[a] + self.dilation[a] * (self.kernel_size[a] - 1) + 1;
            out_pad[a] = (size[a] + 2 * padding[a]).saturating_sub(full);
        }
        let options = ConvTransposeOptions::new(self.stride, padding, out_pad, self.dilation, self.groups);
        fold(conv_transpose3d(y, weight5(self, weight), None, options))
    }
}

impl Relevance for Conv3d {
    fn layer_type(&self) -> LayerType {
        LayerType::Conv3d
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[Some(self.weight.id.val()), self.bias.as_ref().map(|b| b.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        let layout = keep_layout(name, "Conv3d takes", &[Layout::Volume { depth: 0 }], inputs, dims)?;
        let (Layout::Volume { depth }, [d]) = (layout, dims) else { return Ok(layout) };
        let (got, _, [out, _, _]) = geometry(self, name, *d)?;
        if got != depth {
            return Err(shape_error(name, format!("a volume of depth {depth} (its layout)"), *d));
        }
        Ok(Layout::Volume { depth: out })
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
        let dims = x.dims();
        let (_, _, [od, oh, ow]) = geometry(self, name, dims)?;
        let [c_out, _, _, _, _] = self.weight.dims();
        let c = in_channels(self);
        // The padded input and the output, checked against the budget before any work.
        let depth = dims[1] / c.max(1);
        let padding = padding_for(self, [depth, dims[2], dims[3]]).unwrap_or([0; 3]);
        let padded = [dims[0], c, depth + 2 * padding[0], dims[2] + 2 * padding[1], dims[3] + 2 * padding[2]];
        crate::limits::check_elements(&format!("layer `{name}`: the padded input"), &padded)?;
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &[dims[0], c_out, od, oh, ow])?;
        Ok(self.forward_with(x.clone(), &LinearLayer::weight(self), LinearLayer::bias(self)))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(fold(self.forward(unfold(x.clone(), in_channels(self)))))
    }

    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}
