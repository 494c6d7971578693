//! [`burn::nn::conv::Conv2d`]: 2-D convolution with stride, padding, dilation and groups.

// Indexing is checked by construction here: indices are the two spatial axes of fixed-size arrays and parts of a stack counted before use.
#![allow(clippy::indexing_slicing)]

use super::{
    LayerType, Layout, LinearLayer, Relevance, WeightStack, Window, forward_apart, inputs_n, keep_layout, shape_error,
    transpose_apart,
};
use crate::error::Result;
use crate::kernels::{conv_transpose2d, conv2d};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
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
        if routes_adjoint(&y.device())
            && let Some(x) = transpose_as_conv(y.clone(), weight, self.stride, padding, self.dilation, self.groups)
        {
            return x;
        }
        let options = transpose_options(self, &y, x_shape);
        conv_transpose2d(y, weight.clone(), options)
    }

    fn stack(&self, parts: Vec<Tensor<4>>) -> WeightStack {
        let route = parts.first().is_some_and(|p| routes_adjoint(&p.device()));
        stack_conv(self, parts, route)
    }

    fn forward_stack(&self, x: Tensor<4>, stack: &WeightStack) -> Vec<Tensor<4>> {
        let Some(w) = stack.fused_forward() else {
            return forward_apart(self, x, stack);
        };
        let options = ConvOptions::new(self.stride, conv_padding(self), self.dilation, self.groups);
        split_per_group(conv2d(x, w.clone(), None, options), self.groups, stack.len())
    }

    fn transpose_stack(&self, ys: Vec<Tensor<4>>, stack: &WeightStack, x_shape: [usize; 4]) -> Tensor<4> {
        let (Some(w), true) = (stack.fused_forward(), ys.len() == stack.len() && !ys.is_empty()) else {
            return transpose_apart(self, ys, stack, x_shape);
        };
        let options = transpose_options(self, &ys[0], x_shape);
        let y = cat_per_group(ys, self.groups);
        match stack.fused_transpose() {
            Some(kernel) => {
                let [_, _, kh, kw] = w.dims();
                adjoint_as_conv(y, kernel.clone(), [kh, kw], conv_padding(self), self.dilation, self.groups)
            }
            None => conv_transpose2d(y, w.clone(), options),
        }
    }
}

/// Whether the adjoint of a stride-1 convolution runs as a forward convolution on `device`:
/// everywhere but on flex, whose transposed convolution is as fast as its convolution or faster
/// (measured with `benches/conv_paths.rs`: 29 against 45 ms for VGG-16's 512-channel 28² layer),
/// while ndarray's is a scalar loop and the GPU backends tune their convolution.
fn routes_adjoint(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device != burn::tensor::Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        true
    }
}

/// [`LinearLayer::stack`] for a convolution, with or without the forward-convolution kernel of
/// the adjoint (`route`).
fn stack_conv(conv: &Conv2d, parts: Vec<Tensor<4>>, route: bool) -> WeightStack {
    if parts.len() < 2 || parts.iter().any(|p| p.dims() != parts[0].dims()) {
        return WeightStack::new(parts);
    }
    let g = conv.groups;
    let forward = stack_per_group(&parts, g, 0);
    let padding = conv_padding(conv);
    let routed: Option<Vec<Tensor<4>>> = match route {
        true => parts.iter().map(|w| routed_kernel(w, conv.stride, padding, conv.dilation, g)).collect(),
        false => None,
    };
    let transpose = routed.map(|kernels| stack_per_group(&kernels, g, 1));
    // With one group the stack is the parts one after the other: the parts become views of it
    // (a slice shares the stack's memory on Burn's backends), so each weight is held once.
    let parts = if g == 1 {
        let out = parts[0].dims()[0];
        (0..parts.len()).map(|i| forward.clone().narrow(0, i * out, out)).collect()
    } else {
        parts
    };
    WeightStack::fused(parts, Some(forward), transpose)
}

/// The adjoint of a stride-1 convolution as a forward convolution: the kernel transposed
/// (per group) and flipped, padding `dilation·(k−1) − padding`. Backends whose transposed
/// convolution is slow (ndarray's is a scalar loop, about 100× slower than its convolution)
/// are routed through their fast convolution; `None` where the identity does not apply
/// (stride > 1, or padding beyond `dilation·(k−1)`).
pub(crate) fn transpose_as_conv(
    y: Tensor<4>,
    weight: &Tensor<4>,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Option<Tensor<4>> {
    let kernel = routed_kernel(weight, stride, padding, dilation, groups)?;
    let [_, _, kh, kw] = weight.dims();
    Some(adjoint_as_conv(y, kernel, [kh, kw], padding, dilation, groups))
}

/// The forward convolution with a [`routed_kernel`] (or a stack of them) of a `k`-sized kernel:
/// stride 1, padding `dilation·(k−1) − padding`.
fn adjoint_as_conv(
    y: Tensor<4>,
    kernel: Tensor<4>,
    k: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Tensor<4> {
    let pad = [dilation[0] * (k[0] - 1) - padding[0], dilation[1] * (k[1] - 1) - padding[1]];
    conv2d(y, kernel, None, ConvOptions::new([1, 1], pad, dilation, groups))
}

/// The kernel of [`transpose_as_conv`]: each group's kernel transposed and flipped,
/// `[g·in_g, out_g, kh, kw]`, or `None` where the identity does not apply.
fn routed_kernel(
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
    Some(
        weight
            .clone()
            .reshape([groups * out_g, in_g * kh * kw])
            .reshape([groups, out_g, in_g, kh * kw])
            .swap_dims(1, 2)
            .reshape([groups * in_g, out_g, kh, kw])
            .flip([2, 3]),
    )
}

/// The options of the transposed convolution of `conv` that takes `y` (`[.., H', W']`) back to
/// an input of `x_shape`, with the output padding that a plain transposed convolution misses.
fn transpose_options(conv: &Conv2d, y: &Tensor<4>, x_shape: [usize; 4]) -> ConvTransposeOptions<2> {
    let padding = conv_padding(conv);
    let [_, _, oh, ow] = y.dims();
    let mut out_pad = [0usize; 2];
    for d in 0..2 {
        let full = ([oh, ow][d] - 1) * conv.stride[d] + conv.dilation[d] * (conv.kernel_size[d] - 1) + 1;
        out_pad[d] = x_shape[2 + d] - (full - 2 * padding[d]);
    }
    ConvTransposeOptions::new(conv.stride, padding, out_pad, conv.dilation, conv.groups)
}

/// Stacks same-shaped kernels group by group along `dim`: 0 for forward kernels
/// `[out, c, kh, kw]`, giving `[k·out, c, kh, kw]` where group `i` holds group `i` of every part
/// in turn; 1 for adjoint kernels `[g·c, out/g, kh, kw]`, giving `[g·c, k·out/g, kh, kw]` (a
/// plain concatenation: the second axis is already per group).
fn stack_per_group(parts: &[Tensor<4>], groups: usize, dim: usize) -> Tensor<4> {
    if groups == 1 || dim == 1 {
        return Tensor::cat(parts.to_vec(), dim);
    }
    let [out, c, kh, kw] = parts[0].dims();
    let grouped = parts.iter().map(|p| p.clone().reshape([groups, out / groups, c * kh * kw])).collect();
    Tensor::<3>::cat(grouped, 1).reshape([parts.len() * out, c, kh, kw])
}

/// Splits `[B, k·C, H, W]` from a kernel stacked by [`stack_per_group`] (dim 0) into its `k`
/// parts `[B, C, H, W]`.
fn split_per_group(y: Tensor<4>, groups: usize, k: usize) -> Vec<Tensor<4>> {
    if groups == 1 {
        return y.chunk(k, 1);
    }
    let [b, kc, h, w] = y.dims();
    let per = kc / (groups * k);
    y.reshape([b, groups, k * per, h * w])
        .chunk(k, 2)
        .into_iter()
        .map(|part| part.reshape([b, groups * per, h, w]))
        .collect()
}

/// The inverse of [`split_per_group`]: `k` tensors `[B, C, H, W]` to `[B, k·C, H, W]`.
fn cat_per_group(ys: Vec<Tensor<4>>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return Tensor::cat(ys, 1);
    }
    let k = ys.len();
    let [b, c, h, w] = ys[0].dims();
    let grouped = ys.into_iter().map(|y| y.reshape([b, groups, c / groups, h * w])).collect();
    Tensor::cat(grouped, 2).reshape([b, k * c, h, w])
}

impl Relevance for Conv2d {
    fn layer_type(&self) -> LayerType {
        LayerType::Conv2d
    }

    fn weights_key(&self) -> Option<u64> {
        Some(super::weights_key(&[Some(self.weight.id.val()), self.bias.as_ref().map(|b| b.id.val())]))
    }

    fn device(&self) -> Option<burn::tensor::Device> {
        Some(self.weight.val().device())
    }

    fn output_layout(&self, name: &str, inputs: &[Layout], dims: &[[usize; 4]]) -> Result<Layout> {
        keep_layout(name, "Conv2d takes", &[Layout::Spatial], inputs, dims)
    }

    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        let [x] = inputs_n::<1>(name, inputs)?;
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
        if dims[1] != c_in {
            return Err(shape_error(name, format!("[batch, {c_in}, H, W]"), dims));
        }
        let [c_out, _, _, _] = self.weight.dims();
        let window =
            Window { kernel: [kh, kw], stride: self.stride, padding, dilation: self.dilation, ceil_mode: false };
        window.check(name, dims, c_out)?;
        Ok(self.forward_with(x.clone(), &LinearLayer::weight(self), LinearLayer::bias(self)))
    }

    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let [x] = inputs else { return None };
        Some(self.forward(x.clone()))
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
        let device = Device::default();
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
                        let direct = burn::tensor::module::conv_transpose2d(y, w, None, opts);
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

    #[test]
    fn stacked_products_equal_the_products_one_by_one() {
        use burn::nn::conv::Conv2dConfig;
        let device = Device::default();
        let mut checked = [0usize; 2];
        for k in 1..=3 {
            for s in 1..=2 {
                for p in 0..=2 {
                    for d in 1..=2 {
                        for g in [1, 2, 3] {
                            let (cin, cout, h) = (2 * g, 3 * g, 9);
                            let conv = Conv2dConfig::new([cin, cout], [k, k])
                                .with_stride([s, s])
                                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                                .with_dilation([d, d])
                                .with_groups(g)
                                .init(&device);
                            let parts: Vec<Tensor<4>> = (0..3)
                                .map(|_| Tensor::random([cout, cin / g, k, k], Distribution::Normal(0.0, 1.0), &device))
                                .collect();
                            let stack = stack_conv(&conv, parts.clone(), true);
                            let x = Tensor::<4>::random([2, cin, h, h], Distribution::Normal(0.0, 1.0), &device);
                            let shape = x.dims();
                            let stacked = conv.forward_stack(x.clone(), &stack);
                            assert_eq!(stacked.len(), 3);
                            let mut ys = Vec::new();
                            for (w, got) in parts.iter().zip(stacked) {
                                let want = conv.forward_with(x.clone(), w, None);
                                let diff = (got - want.clone()).abs().max().into_scalar::<f32>();
                                assert!(diff < 1e-4, "forward k{k} s{s} p{p} d{d} g{g}: {diff}");
                                ys.push(Tensor::<4>::random(want.dims(), Distribution::Normal(0.0, 1.0), &device));
                            }
                            let want = ys
                                .iter()
                                .zip(&parts)
                                .map(|(y, w)| conv.transpose_with(y.clone(), w, shape))
                                .reduce(|a, b| a + b)
                                .unwrap();
                            let got = conv.transpose_stack(ys, &stack, shape);
                            assert_eq!(got.dims(), shape);
                            let diff = (got - want).abs().max().into_scalar::<f32>();
                            assert!(diff < 1e-4, "adjoint k{k} s{s} p{p} d{d} g{g}: {diff}");
                            checked[usize::from(stack.fused_transpose().is_some())] += 1;
                        }
                    }
                }
            }
        }
        // Both adjoint routes (transposed convolution, forward convolution) are covered.
        assert!(checked[0] > 20 && checked[1] > 20, "{checked:?}");
    }
}
