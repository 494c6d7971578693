//! Stride-1 convolutions on Burn's flex CPU backend as sums of shifted matrix products.
//!
//! With the input zero-padded to `[C, Hp, Wp]` and the output computed on the padded width
//! (`Wp` columns per output row, of which the last `kw − 1` are discarded), output column
//! `q = oh·Wp + ow` reads input column `q + dy·Wp + dx` for the kernel tap `(dy, dx)`. Each tap
//! is then one matrix product of the tap's `[M, C]` weight slice with the padded input itself,
//! read at a fixed offset: no im2col matrix, no channels-last copy, and each output still sums
//! exactly its own window (unlike Winograd, whose tile transforms leak a neighbour's share).
//!
//! The work is split into blocks of output rows, at most about `2²¹ / (M + C)` columns each and
//! at least one per thread, one block per task on Rayon's pool, each product single-threaded
//! (only a map with fewer rows than threads spreads each product over the pool); the products
//! are `gemm`'s (the crate flex itself multiplies with, AVX-512 kernels
//! included). The adjoint
//! (a transposed convolution with stride 1) is the same sum with the taps flipped and the
//! weight read transposed through its strides, so no flipped kernel is ever stored.
//!
//! Measured against flex's convolution in `benches/conv_paths.rs` (docs/benchmarks.md).

use super::{matmul, with_f32};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// The fewest channels on either side of the product for which this kernel is used: below it
/// flex's small-channel paths win (VGG-16's first layer has 3).
const MIN_CHANNELS: usize = 16;

/// A block's output columns are about `COLUMN_BUDGET / (M + C)`: its `M × T` output and
/// `C × T` input take 8 MiB at most, and each tap's weight slice, packed once per block, is
/// reused over `T` columns. Measured on VGG-16's and ResNet-50's 3×3 shapes (two cores with 2 MiB
/// of L2 each): 2²¹ was as fast as 2¹⁹ and 2¹⁷ at 64 channels and up to 3× faster at 512, where
/// smaller blocks spent their time packing the weights again.
const COLUMN_BUDGET: usize = 1 << 21;

/// The adjoint runs here only where the map has at least `M·C / ADJOINT_POSITIONS` positions:
/// below that flex's transposed convolution (one product over all taps, then a scatter) wins
/// (2.1 against 3.5 ms at 512 channels on 7², 1.5 against 2.3 ms at 256 on 14², 16.6 against
/// 18.0 at 512 on 28²), while at 56² and up this kernel is 1.2–1.6× faster
/// (docs/benchmarks.md, issue 21).
const ADJOINT_POSITIONS: usize = 64;

/// A shifted-product convolution: an input of `batch × c × h × w`, zero-padded by
/// `[top, bottom, left, right]`, to `m` output channels through `taps`.
struct Plan {
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    pad: [usize; 4],
    m: usize,
    kernel: [usize; 2],
    /// Each tap's offset in the weight buffer and its shift `(dy, dx)` in the padded input.
    taps: Vec<(usize, usize, usize)>,
    /// The weight's strides between output channels (rows) and input channels (columns).
    strides: [usize; 2],
}

/// `conv2d(x, weight, bias)` with stride 1, dilation 1 and one group; `None` where this kernel
/// does not apply (not a flex `f32` tensor, autodiff, too few channels, a 1×1 kernel, which flex
/// multiplies directly already).
pub(super) fn conv(x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>, pad: [usize; 4]) -> Option<Tensor<4>> {
    let [batch, c, h, w] = x.dims();
    let [m, c_w, kh, kw] = weight.dims();
    if c_w != c || kh * kw < 2 || c.min(m) < MIN_CHANNELS {
        return None;
    }
    let taps = (0..kh * kw).map(|t| (t, t / kw, t % kw)).collect();
    let plan = Plan { batch, c, h, w, pad, m, kernel: [kh, kw], taps, strides: [c * kh * kw, kh * kw] };
    run(&plan, x, weight, bias)
}

/// `conv_transpose2d(y, weight)` with stride 1, dilation 1, one group and symmetric `padding`
/// (`[ph, pw]`, at most `k − 1`): the adjoint of [`conv`]. `None` where it does not apply.
pub(super) fn adjoint(y: &Tensor<4>, weight: &Tensor<4>, padding: [usize; 2]) -> Option<Tensor<4>> {
    let [batch, c, h, w] = y.dims();
    let [c_w, m, kh, kw] = weight.dims();
    if c_w != c || kh * kw < 2 || c.min(m) < MIN_CHANNELS {
        return None;
    }
    if h * w * ADJOINT_POSITIONS < m * c {
        return None;
    }
    let ph = (kh - 1).checked_sub(padding[0])?;
    let pw = (kw - 1).checked_sub(padding[1])?;
    let taps = (0..kh * kw).map(|t| (t, kh - 1 - t / kw, kw - 1 - t % kw)).collect();
    let plan =
        Plan { batch, c, h, w, pad: [ph, ph, pw, pw], m, kernel: [kh, kw], taps, strides: [kh * kw, m * kh * kw] };
    run(&plan, y, weight, None)
}

/// Runs `plan` on the contiguous `f32` buffers of `x`, `weight` and `bias`.
fn run(plan: &Plan, x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>) -> Option<Tensor<4>> {
    let device = x.device();
    let (out, dims) = with_f32(x, |xs| {
        with_f32(weight, |ws| match bias {
            Some(b) => with_f32(b, |bs| products(plan, xs, ws, Some(bs))),
            None => products(plan, xs, ws, None),
        })
    })?;
    Some(Tensor::from_data(TensorData::new(out, dims), &device))
}

/// The products of `plan`: the output buffer and its shape `[batch, m, ho, wo]`, or `None` if a
/// buffer is shorter than the plan reads (checked here once, before any product).
fn products(plan: &Plan, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Option<(Vec<f32>, [usize; 4])> {
    let &Plan { batch, c, h, w, pad: [top, bottom, left, right], m, kernel: [kh, kw], .. } = plan;
    let (hp, wp) = (h + top + bottom, w + left + right);
    let (ho, wo) = ((hp + 1).checked_sub(kh)?, (wp + 1).checked_sub(kw)?);
    let plane = hp.checked_mul(wp)?;
    let image = c.checked_mul(plane)?;
    // `kw` columns of slack: the discarded columns of the last row read past the last plane.
    let padded_len = batch.checked_mul(image)?.checked_add(kw)?;
    if ho == 0
        || wo == 0
        || batch == 0
        || h == 0
        || w == 0
        || x.len() != batch * c * h * w
        || bias.is_some_and(|b| b.len() != m)
    {
        return None;
    }
    let [rs, cs] = plan.strides;
    let reach = |&(off, _, _): &(usize, usize, usize)| off + (m - 1) * rs + (c - 1) * cs;
    if plan.taps.iter().map(reach).max()? >= weight.len() {
        return None;
    }
    let max_shift = plan.taps.iter().map(|&(_, dy, dx)| dy * wp + dx).max()?;
    if (batch - 1) * image + (c - 1) * plane + ho * wp + max_shift > padded_len {
        return None;
    }

    let mut xp = vec![0f32; padded_len];
    xp.par_chunks_mut(plane).zip(x.par_chunks(h * w)).for_each(|(dst, src)| {
        for (row, src_row) in dst.chunks_mut(wp).skip(top).zip(src.chunks(w)) {
            if let Some(d) = row.get_mut(left..left + w) {
                d.copy_from_slice(src_row);
            }
        }
    });

    // Blocks of output rows within the column budget, at least enough for every thread and, at
    // batch 1, a multiple of the thread count: each runs its products single-threaded, since
    // `gemm`'s own threading reached 0.4–0.9× of this split's rate. Only a map with fewer rows
    // than threads spreads each product over the pool.
    let threads = rayon::current_num_threads().max(1);
    let columns = (COLUMN_BUDGET / (m + c)).clamp(64, 8192);
    let mut blocks = ho.div_ceil(columns.div_ceil(wp).min(ho)).max(threads.div_ceil(batch));
    if batch == 1 {
        blocks = blocks.div_ceil(threads) * threads;
    }
    let rows = ho.div_ceil(blocks.min(ho));
    let blocks = ho.div_ceil(rows);
    let parallelism = match batch * blocks < threads {
        true => gemm::Parallelism::Rayon(threads),
        false => gemm::Parallelism::None,
    };
    let block = |i: usize| -> Option<Vec<f32>> {
        let (b, r0) = (i / blocks, (i % blocks) * rows);
        let t = (rows.min(ho - r0)) * wp;
        let mut dst = vec![0f32; m * t];
        for (k, &(off, dy, dx)) in plan.taps.iter().enumerate() {
            // The tap's `[m, c]` weight slice times the padded input read from its shift, each
            // channel's plane `plane` values apart; the first tap writes, the others add.
            let start = b * image + r0 * wp + dy * wp + dx;
            let lhs = weight.get(off..)?;
            matmul(&mut dst, [m, t, c], lhs, [rs, cs], xp.get(start..)?, plane, k > 0, parallelism)?;
        }
        Some(dst)
    };
    let done: Vec<Vec<f32>> = (0..batch * blocks).into_par_iter().map(block).collect::<Option<_>>()?;
    drop(xp);

    let mut out = vec![0f32; batch * m * ho * wo];
    out.par_chunks_mut(ho * wo).enumerate().for_each(|(i, plane_out)| {
        let (b, channel) = (i / m, i % m);
        let shift = bias.and_then(|bs| bs.get(channel)).copied().unwrap_or(0.0);
        for (j, part) in done.iter().skip(b * blocks).take(blocks).enumerate() {
            let t = part.len() / m;
            let rows_here = part.chunks(wp).skip(channel * t / wp).take(t / wp);
            for (row_out, row) in plane_out.chunks_mut(wo).skip(j * rows).zip(rows_here) {
                for (o, &v) in row_out.iter_mut().zip(row) {
                    *o = v + shift;
                }
            }
        }
    });
    Some((out, [batch, m, ho, wo]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::{conv_transpose2d, conv2d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use burn::tensor::{Device, Distribution};

    fn max_rel(a: Tensor<4>, b: Tensor<4>) -> f32 {
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-30);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    /// Every kernel size, padding (asymmetric included), batch, bias and a strided input and a
    /// weight that is a view into a larger stack, against Burn's own convolution, element by
    /// element (relative to the largest output). Both sides sum up to 17·25 `f32` products in
    /// different orders: over repeated runs the gap reached 1.1e-6 of the largest output (the
    /// random data differ from run to run), so the bound is 1e-5; a wrong tap or offset is off
    /// by the size of an output.
    #[test]
    fn the_shifted_products_equal_burns_convolution_and_its_adjoint() {
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        let mut checked = 0;
        for (kh, kw) in [(3, 3), (1, 3), (5, 5), (2, 2), (7, 1)] {
            for pad in [[0, 0, 0, 0], [1, 1, 1, 1], [kh / 2, kh / 2, kw / 2, kw / 2], [2, 0, 1, 0]] {
                for batch in [1, 3] {
                    let (c, m, h, w) = (17, 20, 9, 6);
                    // A view: the middle `m` kernels of a stack, and an input read through a
                    // transpose (not contiguous).
                    let stack = Tensor::<4>::random([3 * m, c, kh, kw], normal, &device);
                    let weight = stack.narrow(0, m, m);
                    let x = Tensor::<4>::random([batch, c, w, h], normal, &device).swap_dims(2, 3);
                    let bias = Tensor::<1>::random([m], normal, &device);
                    let Some(ours) = conv(&x, &weight, Some(&bias), pad) else {
                        assert!(h + pad[0] + pad[1] < kh || w + pad[2] + pad[3] < kw);
                        continue;
                    };
                    let options =
                        ConvOptions::new_with_padding([1, 1], [(pad[0], pad[1]), (pad[2], pad[3])], [1, 1], 1);
                    let burns = conv2d(x.clone(), weight.clone(), Some(bias), options);
                    assert_eq!(ours.dims(), burns.dims());
                    let err = max_rel(ours, burns.clone());
                    assert!(err < 1e-5, "forward k{kh}x{kw} pad {pad:?} batch {batch}: {err:e}");
                    checked += 1;
                    if pad[0] == pad[1] && pad[2] == pad[3] && pad[0] < kh && pad[2] < kw {
                        let y = Tensor::<4>::random(burns.dims(), normal, &device);
                        let options = ConvTransposeOptions::new([1, 1], [pad[0], pad[2]], [0, 0], [1, 1], 1);
                        let ours = adjoint(&y, &weight, [pad[0], pad[2]]).expect("the adjoint applies");
                        let burns = conv_transpose2d(y, weight, None, options);
                        assert_eq!(ours.dims(), [batch, c, h, w]);
                        let err = max_rel(ours, burns);
                        assert!(err < 1e-5, "adjoint k{kh}x{kw} pad {pad:?} batch {batch}: {err:e}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 50, "{checked} configurations checked");
    }

    /// Where the kernel does not apply it says so, and the caller runs Burn's op.
    #[test]
    fn the_kernel_declines_what_it_does_not_cover() {
        let device = Device::flex();
        let x = Tensor::<4>::ones([1, 32, 8, 8], &device);
        assert!(conv(&x, &Tensor::ones([32, 32, 1, 1], &device), None, [0; 4]).is_none(), "1x1");
        assert!(conv(&x, &Tensor::ones([4, 32, 3, 3], &device), None, [1; 4]).is_none(), "4 outputs");
        assert!(conv(&x, &Tensor::ones([32, 16, 3, 3], &device), None, [1; 4]).is_none(), "channels differ");
        assert!(adjoint(&x, &Tensor::ones([32, 32, 3, 3], &device), [3, 3]).is_none(), "padding past k - 1");
        let small = Tensor::<4>::ones([1, 512, 7, 7], &device);
        assert!(adjoint(&small, &Tensor::ones([512, 512, 3, 3], &device), [1, 1]).is_none(), "49 positions");
    }
}
