//! Compute kernels that the layers call in place of Burn's operation where, on some backend,
//! they are measurably faster and give the same numbers.
//!
//! ```
//! use rap_attrib::burn::tensor::{Device, Distribution, Tensor};
//! use rap_attrib::burn::tensor::ops::ConvOptions;
//!
//! let device = Device::default();
//! let x = Tensor::<4>::random([2, 32, 10, 10], Distribution::Default, &device);
//! let w = Tensor::<4>::random([48, 32, 3, 3], Distribution::Default, &device);
//! let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
//! let ours = rap_attrib::kernels::conv2d(x.clone(), w.clone(), None, options.clone());
//! let burns = rap_attrib::burn::tensor::module::conv2d(x, w, None, options);
//! let diff = (ours - burns.clone()).abs().max().into_scalar::<f32>();
//! assert!(diff <= 1e-5 * burns.abs().max().into_scalar::<f32>());
//! ```
//!
//! Today, on Burn's flex CPU backend: stride-1 convolutions and their adjoints as shifted
//! products (`src/kernels/shifted.rs`), strided, dilated and small-map convolutions as unfolded
//! (im2col) products (`src/kernels/im2col.rs`), and RAP's elementwise steps fused into single
//! passes (`src/kernels/fused.rs`, used by the rule itself). Each convolution entry point here
//! has Burn's signature and falls back to Burn's own operation wherever its kernels do not apply
//! (another backend, `f64`, autodiff tensors, groups), so a caller never has to know which ran.

use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

#[cfg(feature = "flex")]
mod fused;
#[cfg(feature = "flex")]
mod im2col;
#[cfg(feature = "flex")]
mod shifted;

/// `f(buffer)` on the contiguous `f32` buffer of a flex tensor (a copy only if it is strided);
/// `None` for any other backend, type, or an autodiff tensor. What every kernel here reads its
/// operands through.
#[cfg(feature = "flex")]
fn with_f32<const D: usize, R>(t: &Tensor<D>, f: impl FnOnce(&[f32]) -> Option<R>) -> Option<R> {
    let p = t.clone().try_into_primitive::<burn::backend::Flex>().ok()?;
    if p.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let p = if p.layout().contiguous_offsets().is_some() { p } else { p.to_contiguous() };
    let (start, end) = p.layout().contiguous_offsets()?;
    f(p.storage::<f32>().get(start..end)?)
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` with `accumulate`: `dst` an `m × n` row-major
/// matrix, `lhs` an `m × k` one read at `lhs[i·rs + r·cs]`, `rhs` a `k × n` one read at
/// `rhs[r·rhs_rs + j]`, by `gemm` with `parallelism`. Every product of the kernels here goes
/// through this one bounds check: `None`, computing nothing, where a slice is shorter than the
/// reads and writes reach (or a dimension is 0), and the kernel then declines.
#[cfg(feature = "flex")]
#[allow(clippy::too_many_arguments)]
fn matmul(
    dst: &mut [f32],
    [m, n, k]: [usize; 3],
    lhs: &[f32],
    [rs, cs]: [usize; 2],
    rhs: &[f32],
    rhs_rs: usize,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) -> Option<()> {
    let lhs_reach = m.checked_sub(1)?.checked_mul(rs)?.checked_add(k.checked_sub(1)?.checked_mul(cs)?)?;
    let rhs_reach = k.checked_sub(1)?.checked_mul(rhs_rs)?.checked_add(n.checked_sub(1)?)?;
    if dst.len() < m.checked_mul(n)? || lhs_reach >= lhs.len() || rhs_reach >= rhs.len() {
        return None;
    }
    // SAFETY: `dst` is written at `i·n + j` for `i < m`, `j < n`, inside its `m·n` values;
    // `lhs` is read at most at `(m − 1)·rs + (k − 1)·cs` and `rhs` at `(k − 1)·rhs_rs + n − 1`,
    // both checked above to be inside the slices; `dst` is borrowed mutably, so no other
    // reference reads or writes it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            cs as isize,
            rs as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Some(())
}

/// RAP's two shares of a middle layer in one pass (`src/kernels/fused.rs`), where the backend
/// is flex and the tensors `f32`; `None` elsewhere (the rule then uses tensor operations).
pub(crate) fn rap_shares(r: &Tensor<4>, a: &Tensor<4>, n: &Tensor<4>, dense: bool) -> Option<(Tensor<4>, Tensor<4>)> {
    #[cfg(feature = "flex")]
    return fused::rap_shares(r, a, n, dense);
    #[cfg(not(feature = "flex"))]
    {
        let _ = (r, a, n, dense);
        None
    }
}

/// RAP's uniform shift of the product `u ⊙ t` in two passes (`src/kernels/fused.rs`); `None`
/// where it does not apply.
pub(crate) fn rap_shift(u: &Tensor<4>, t: &Tensor<4>, r_sum: &Tensor<4>) -> Option<Tensor<4>> {
    #[cfg(feature = "flex")]
    return fused::rap_shift(u, t, r_sum);
    #[cfg(not(feature = "flex"))]
    {
        let _ = (u, t, r_sum);
        None
    }
}

/// Up to this many input positions (batch × H × W) a stride-1 convolution runs as unfolded
/// products (`im2col.rs`); above it as shifted products (`shifted.rs`) where they apply (16
/// channels or more), else unfolded too. Measured on ResNet-50's and VGG-16's 3×3 layers
/// (`benches/conv_paths.rs`, docs/benchmarks.md): at batch 1 the unfolded product wins at 7²,
/// 14² and 28², the shifted one at 56² and above, and at batch 8 from 14² on; with 3 input
/// channels (VGG-16's first layer) the unfolded product takes a quarter of flex's time.
#[cfg(feature = "flex")]
const UNFOLD_POSITIONS: usize = 1024;

/// [`burn::tensor::module::conv2d`], through the crate's kernels where they apply: stride-1
/// convolutions on large maps as shifted products (`shifted.rs`), every other convolution with
/// one group (strided, dilated, small maps, few channels) as unfolded products (`im2col.rs`);
/// 1×1 stride-1 convolutions (one matrix product in flex already), groups and other backends
/// keep Burn's op.
///
/// # Shapes
///
/// - `x`: `[B, C_in, H, W]`, `weight`: `[C_out, C_in/groups, kh, kw]`, `bias`: `[C_out]`
/// - output: `[B, C_out, H', W']`
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if options.groups == 1 {
        let [(top, bottom), (left, right)] = options.padding;
        let pad = [top, bottom, left, right];
        let [batch, _, h, w] = x.dims();
        let [_, _, kh, kw] = weight.dims();
        let unit = options.stride == [1, 1] && options.dilation == [1, 1];
        if unit
            && kh * kw > 1
            && batch * h * w > UNFOLD_POSITIONS
            && let Some(y) = shifted::conv(&x, &weight, bias.as_ref(), pad)
        {
            return y;
        }
        if !unit || kh * kw > 1 {
            let g = im2col::Geometry { pad, stride: options.stride, dilation: options.dilation };
            if let Some(y) = im2col::conv(&x, &weight, bias.as_ref(), g) {
                return y;
            }
        }
    }
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// [`burn::tensor::module::conv_transpose2d`] without a bias, through the crate's kernels where
/// they apply: shifted products for stride 1 on large maps (`shifted.rs`), otherwise, with one
/// group, one product into the unfolded space and a scatter-add (`im2col.rs`).
///
/// # Shapes
///
/// - `y`: `[B, C_out, H', W']`, `weight`: `[C_out, C_in/groups, kh, kw]`
/// - output: `[B, C_in, H, W]`
pub fn conv_transpose2d(y: Tensor<4>, weight: Tensor<4>, options: ConvTransposeOptions<2>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if options.groups == 1 {
        if options.stride == [1, 1]
            && options.dilation == [1, 1]
            && options.padding_out == [0, 0]
            && let Some(x) = shifted::adjoint(&y, &weight, options.padding)
        {
            return x;
        }
        let [_, _, ho, wo] = y.dims();
        let [_, _, kh, kw] = weight.dims();
        let [ph, pw] = options.padding;
        // The input size the transposed convolution restores: (o − 1)·s + d·(k − 1) + 1 + extra − 2p.
        let len = |o: usize, s: usize, d: usize, k: usize, p: usize, extra: usize| {
            let span = o.checked_sub(1)?.checked_mul(s)?.checked_add(d.checked_mul(k.checked_sub(1)?)?)?;
            span.checked_add(1 + extra)?.checked_sub(p.checked_mul(2)?).filter(|&n| n > 0)
        };
        let h = len(ho, options.stride[0], options.dilation[0], kh, ph, options.padding_out[0]);
        let w = len(wo, options.stride[1], options.dilation[1], kw, pw, options.padding_out[1]);
        if let (Some(h), Some(w)) = (h, w) {
            let g = im2col::Geometry { pad: [ph, ph, pw, pw], stride: options.stride, dilation: options.dilation };
            if let Some(x) = im2col::adjoint(&y, &weight, g, [h, w]) {
                return x;
            }
        }
    }
    burn::tensor::module::conv_transpose2d(y, weight, None, options)
}
