//! [`burn::nn::conv::Conv2d`]: 2-D convolution with stride, padding, dilation and groups.

use super::{LayerType, LinearLayer, Relevance, expect_inputs, shape_error};
use crate::error::Result;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// The symmetric padding `[ph, pw]` of a convolution, or `None` for an asymmetric one.
pub(crate) fn padding_of(padding: &PaddingConfig2d, kernel: [usize; 2]) -> Option<[usize; 2]> {
    match padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => Some([*top, *left]),
        PaddingConfig2d::Same if kernel[0] % 2 == 1 && kernel[1] % 2 == 1 => Some([kernel[0] / 2, kernel[1] / 2]),
        _ => None,
    }
}

fn conv_padding(conv: &Conv2d) -> [usize; 2] {
    padding_of(&conv.padding, conv.kernel_size).unwrap_or([0, 0])
}

/// 2-D convolution.
///
/// The rule-facing weight is Burn's own `[out, in/groups, kh, kw]`. The transpose is a
/// transposed convolution with the output padding that restores the input size.
///
/// # Shapes
///
/// - input: `[B, C_in, H, W]`
/// - output: `[B, C_out, H', W']`
impl LinearLayer for Conv2d {
    fn weight(&self) -> Tensor<4> {
        self.weight.val()
    }

    fn bias(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let options = ConvOptions::new(self.stride, conv_padding(self), self.dilation, self.groups);
        conv2d(x, weight.clone(), bias, options)
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        let padding = conv_padding(self);
        if let Some(x) = transpose_as_conv(y.clone(), weight, self.stride, padding, self.dilation, self.groups) {
            return x;
        }
        let [_, _, oh, ow] = y.dims();
        // Size a plain transposed convolution would give, and the remainder it misses.
        let mut out_pad = [0usize; 2];
        for d in 0..2 {
            let full =
                (if d == 0 { oh } else { ow } - 1) * self.stride[d] + self.dilation[d] * (self.kernel_size[d] - 1) + 1;
            let base = full - 2 * padding[d];
            out_pad[d] = x_shape[2 + d] - base;
        }
        let options = ConvTransposeOptions::new(self.stride, padding, out_pad, self.dilation, self.groups);
        conv_transpose2d(y, weight.clone(), None, options)
    }
}

/// The adjoint of a stride-1 convolution as a forward convolution: the kernel transposed
/// (per group) and flipped, padding `dilation·(k−1) − padding`. Backends whose transposed
/// convolution is slow (ndarray's is a scalar loop, about 100× slower than its convolution)
/// are routed through their fast convolution; `None` where the identity does not apply
/// (stride > 1, or padding beyond `dilation·(k−1)`).
pub fn transpose_as_conv(
    y: Tensor<4>,
    weight: &Tensor<4>,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Option<Tensor<4>> {
    let [out, in_g, kh, kw] = weight.dims();
    let k = [kh, kw];
    if stride != [1, 1] || (0..2).any(|d| padding[d] > dilation[d] * (k[d] - 1)) {
        return None;
    }
    let out_g = out / groups;
    let w = weight
        .clone()
        .reshape([groups * out_g, in_g * kh * kw])
        .reshape([groups, out_g, in_g, kh * kw])
        .swap_dims(1, 2)
        .reshape([groups * in_g, out_g, kh, kw])
        .flip([2, 3]);
    let pad = [dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1]];
    Some(conv2d(y, w, None, ConvOptions::new([1, 1], pad, dilation, groups)))
}

impl Relevance for Conv2d {
    fn layer_type(&self) -> LayerType {
        LayerType::Conv2d
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        expect_inputs(name, inputs, 1)?;
        let x = &inputs[0];
        let dims = x.dims();
        let [_, c_per_group, kh, kw] = self.weight.dims();
        let c_in = c_per_group * self.groups;
        let Some(padding) = padding_of(&self.padding, self.kernel_size) else {
            return Err(shape_error(
                name,
                "a convolution with symmetric padding (asymmetric padding is not supported)",
                dims,
            ));
        };
        let fits = |d: usize| dims[2 + d] + 2 * padding[d] > self.dilation[d] * ([kh, kw][d] - 1);
        if dims[1] != c_in || !fits(0) || !fits(1) {
            return Err(shape_error(
                name,
                format!("[batch, {c_in}, H, W] with H, W large enough for a {kh}x{kw} kernel"),
                dims,
            ));
        }
        Ok(self.forward_with(x.clone(), &LinearLayer::weight(self), LinearLayer::bias(self)))
    }

    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn the_convolution_route_equals_the_transposed_convolution() {
        let device = Device::flex();
        let mut checked = 0;
        for k in 1..=3 {
            for p in 0..=2 {
                for d in 1..=2 {
                    for g in 1..=2 {
                        let (cin, cout, h) = (2 * g, 3 * g, 7);
                        let w = Tensor::<4>::random([cout, cin / g, k, k], Distribution::Normal(0.0, 1.0), &device);
                        let oh = h + 2 * p - d * (k - 1);
                        let y = Tensor::<4>::random([2, cout, oh, oh], Distribution::Normal(0.0, 1.0), &device);
                        let Some(routed) = transpose_as_conv(y.clone(), &w, [1, 1], [p, p], [d, d], g) else {
                            assert!(p > d * (k - 1));
                            continue;
                        };
                        let opts = ConvTransposeOptions::new([1, 1], [p, p], [0, 0], [d, d], g);
                        let direct = conv_transpose2d(y, w, None, opts);
                        assert_eq!(routed.dims(), [2, cin, h, h]);
                        let diff = (routed - direct).abs().max().into_scalar::<f32>();
                        assert!(diff < 1e-4, "k{k} p{p} d{d} g{g}: {diff}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 26, "every applicable configuration is checked");
    }
}
