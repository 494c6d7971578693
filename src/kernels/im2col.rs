//! Strided and dilated convolutions on Burn's flex CPU backend as one matrix product per block
//! of output positions over an unfolded (im2col) input.
//!
//! Output position `q = (b, oy, ox)` reads input `(c, oy·sh + ky·dh − top, ox·sw + kx·dw − left)`
//! for each row `r = (c, ky, kx)` of the weight's `[M, C·kh·kw]` view. The kernel unfolds a block
//! of positions into a `[C·kh·kw, T]` matrix (zeros where the window leaves the input) and
//! multiplies the weight with it once: one product with all the taps in its inner dimension, so
//! the weight is packed once per block, not once per tap. Each output still sums exactly its own
//! window, and its error against `f64` is that of one `f32` dot product of length `C·kh·kw`.
//!
//! Blocks hold about `2²¹` unfolded values (8 MiB) whatever the input size, so memory stays
//! bounded on any image; several samples share a block where the map is small (ResNet-50's
//! 14² and 7² stages at batch 8 multiply once). With fewer blocks than two per thread, each
//! product is spread over Rayon's pool; otherwise blocks run one per task.
//!
//! Measured against flex's convolution in `benches/conv_paths.rs` (docs/benchmarks.md): on
//! ResNet-50's strided layers flex's convolution takes 1.3–4.4× this kernel's time.

use super::with_f32;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// A block's unfolded matrix holds about this many values (`K × T`, 8 MiB of `f32`).
const UNFOLD_BUDGET: usize = 1 << 21;

/// The geometry of one convolution: input `[batch, c, h, w]`, zero-padded by `[top, bottom,
/// left, right]`, weight `[m, c, kh, kw]`, with `stride` and `dilation`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    /// The zero padding `[top, bottom, left, right]`.
    pub pad: [usize; 4],
    /// The stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// The dilation `[dh, dw]`.
    pub dilation: [usize; 2],
}

/// `conv2d(x, weight, bias)` with one group through unfolded blocks; `None` where this kernel
/// does not apply (not a flex `f32` tensor, autodiff, grouped weights, an empty output).
pub(super) fn conv(x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>, g: Geometry) -> Option<Tensor<4>> {
    let device = x.device();
    let [batch, c, h, w] = x.dims();
    let [m, c_w, kh, kw] = weight.dims();
    if c_w != c || g.stride.contains(&0) || g.dilation.contains(&0) {
        return None;
    }
    let plan = Plan { batch, c, h, w, m, kernel: [kh, kw], g };
    let (out, dims) = with_f32(x, |xs| {
        with_f32(weight, |ws| match bias {
            Some(b) => with_f32(b, |bs| plan.run(xs, ws, Some(bs))),
            None => plan.run(xs, ws, None),
        })
    })?;
    Some(Tensor::from_data(TensorData::new(out, dims), &device))
}

struct Plan {
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    kernel: [usize; 2],
    g: Geometry,
}

impl Plan {
    /// The output size along one axis: `(n + pads − d·(k − 1) − 1) / s + 1`, `None` if empty.
    fn out_len(n: usize, pads: usize, k: usize, s: usize, d: usize) -> Option<usize> {
        let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
        Some((n.checked_add(pads)?.checked_sub(span)?) / s + 1)
    }

    /// The output buffer `[batch, m, ho, wo]` and its shape, or `None` if a buffer does not
    /// hold what the shapes say (checked once, before any product).
    fn run(&self, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Option<(Vec<f32>, [usize; 4])> {
        let &Plan { batch, c, h, w, m, kernel: [kh, kw], g } = self;
        let [top, bottom, left, right] = g.pad;
        let ho = Self::out_len(h, top.checked_add(bottom)?, kh, g.stride[0], g.dilation[0])?;
        let wo = Self::out_len(w, left.checked_add(right)?, kw, g.stride[1], g.dilation[1])?;
        let k = c.checked_mul(kh)?.checked_mul(kw)?;
        let n = ho.checked_mul(wo)?;
        let total = batch.checked_mul(n)?;
        if total == 0
            || k == 0
            || m == 0
            || x.len() != batch.checked_mul(c)?.checked_mul(h)?.checked_mul(w)?
            || weight.len() != m.checked_mul(k)?
            || bias.is_some_and(|b| b.len() != m)
        {
            return None;
        }
        let t = (UNFOLD_BUDGET / k).clamp(256, 1 << 16).min(total);
        let blocks = total.div_ceil(t);
        let threads = rayon::current_num_threads();
        let spread = blocks < 2 * threads;
        let parallelism = if spread { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        let block = |i: usize| -> Vec<f32> {
            let j0 = i * t;
            let cols_here = t.min(total - j0);
            let mut cols = vec![0f32; k * cols_here];
            let fill = |(r, row): (usize, &mut [f32])| self.unfold_row(x, r, j0, row, [ho, wo]);
            match spread {
                true => cols.par_chunks_mut(cols_here).enumerate().for_each(fill),
                false => cols.chunks_mut(cols_here).enumerate().for_each(fill),
            }
            let mut dst = vec![0f32; m * cols_here];
            // SAFETY: `dst` holds `m × cols_here` values written with row stride `cols_here`;
            // the weight, checked above to hold `m × k` values, is read at `i·k + r` for `i < m`,
            // `r < k`; `cols` holds `k × cols_here` values read with row stride `cols_here`.
            unsafe {
                gemm::gemm(
                    m,
                    cols_here,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    cols_here as isize,
                    false,
                    weight.as_ptr(),
                    1,
                    k as isize,
                    cols.as_ptr(),
                    1,
                    cols_here as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
            dst
        };
        let shift = |channel: usize| bias.and_then(|bs| bs.get(channel)).copied().unwrap_or(0.0);
        if batch == 1 && blocks == 1 {
            // The one block is the output, `[m, n]`, already in place.
            let mut out = block(0);
            if bias.is_some() {
                out.par_chunks_mut(n).enumerate().for_each(|(i, row)| row.iter_mut().for_each(|v| *v += shift(i)));
            }
            return Some((out, [1, m, ho, wo]));
        }
        let done: Vec<Vec<f32>> = match spread {
            true => (0..blocks).map(block).collect(),
            false => (0..blocks).into_par_iter().map(block).collect(),
        };
        // Each output plane `(b, channel)` gathers its positions from the blocks that hold them.
        let mut out = vec![0f32; total * m];
        out.par_chunks_mut(n).enumerate().for_each(|(p, plane)| {
            let (b, channel) = (p / m, p % m);
            let add = shift(channel);
            let mut q = 0;
            while q < n {
                let j = b * n + q;
                let (i, jj) = (j / t, j % t);
                let Some(part) = done.get(i) else { return };
                let width = part.len() / m;
                let len = (width - jj).min(n - q);
                let src = part.get(channel * width + jj..channel * width + jj + len);
                if let (Some(src), Some(dst)) = (src, plane.get_mut(q..q + len)) {
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s + add);
                }
                q += len;
            }
        });
        Some((out, [batch, m, ho, wo]))
    }

    /// Row `r = (channel, ky, kx)` of the unfolded block that starts at position `j0`: for each
    /// position `(b, oy, ox)`, the input value its window reads at that tap, or 0 in the padding.
    fn unfold_row(&self, x: &[f32], r: usize, j0: usize, row: &mut [f32], [ho, wo]: [usize; 2]) {
        let &Plan { c, h, w, kernel: [kh, kw], g, .. } = self;
        let (channel, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
        let n = ho * wo;
        let (oy_off, ox_off) = (ky * g.dilation[0], kx * g.dilation[1]);
        let mut filled = 0;
        while filled < row.len() {
            let j = j0 + filled;
            let (b, q) = (j / n, j % n);
            let (oy, ox0) = (q / wo, q % wo);
            let len = (wo - ox0).min(row.len() - filled);
            let dst = row.get_mut(filled..filled + len).unwrap_or_default();
            filled += len;
            // The input row this output row reads at this tap, if it is not in the padding.
            let iy = (oy * g.stride[0] + oy_off).checked_sub(g.pad[0]).filter(|&iy| iy < h);
            let Some(src) = iy.and_then(|iy| x.get(((b * c + channel) * h + iy) * w..)?.get(..w)) else {
                continue;
            };
            for (ox, d) in (ox0..).zip(dst.iter_mut()) {
                let ix = (ox * g.stride[1] + ox_off).checked_sub(g.pad[2]);
                *d = ix.and_then(|ix| src.get(ix)).copied().unwrap_or(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution};

    /// Every stride, dilation, kernel shape, padding (asymmetric included), batch (several
    /// samples per block and blocks that split a sample), bias, and a weight that is a view into
    /// a stack, against Burn's own convolution element by element, relative to the largest
    /// output. Both sides sum up to 17·25 `f32` products in different orders; a wrong tap or
    /// offset is off by the size of an output.
    #[test]
    fn the_unfolded_product_equals_burns_convolution() {
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        let mut checked = 0;
        for (kh, kw) in [(3, 3), (1, 1), (7, 7), (2, 3)] {
            for (stride, dilation) in [([2, 2], [1, 1]), ([1, 2], [1, 1]), ([3, 2], [2, 1]), ([1, 1], [2, 2])] {
                for pad in [[0, 0, 0, 0], [kh / 2, kh / 2, kw / 2, kw / 2], [2, 0, 1, 0]] {
                    for (batch, h, w) in [(1, 9, 6), (3, 11, 13), (2, 70, 66)] {
                        let (c, m) = (17, 20);
                        let stack = Tensor::<4>::random([3 * m, c, kh, kw], normal, &device);
                        let weight = stack.narrow(0, m, m);
                        let x = Tensor::<4>::random([batch, c, w, h], normal, &device).swap_dims(2, 3);
                        let bias = Tensor::<1>::random([m], normal, &device);
                        let g = Geometry { pad, stride, dilation };
                        let options =
                            ConvOptions::new_with_padding(stride, [(pad[0], pad[1]), (pad[2], pad[3])], dilation, 1);
                        let fits = h + pad[0] + pad[1] > dilation[0] * (kh - 1)
                            && w + pad[2] + pad[3] > dilation[1] * (kw - 1);
                        let Some(ours) = conv(&x, &weight, Some(&bias), g) else {
                            assert!(!fits, "k{kh}x{kw} s{stride:?} d{dilation:?} pad {pad:?} {h}x{w}: declined");
                            continue;
                        };
                        let burns = conv2d(x.clone(), weight.clone(), Some(bias), options);
                        assert_eq!(ours.dims(), burns.dims());
                        let scale = burns.clone().abs().max().into_scalar::<f32>();
                        let err = (ours - burns).abs().max().into_scalar::<f32>() / scale;
                        assert!(err < 1e-5, "k{kh}x{kw} s{stride:?} d{dilation:?} pad {pad:?} batch {batch}: {err:e}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 120, "{checked} configurations checked");
    }

    /// Where the kernel does not apply it says so, and the caller runs Burn's op.
    #[test]
    fn the_kernel_declines_what_it_does_not_cover() {
        let device = Device::flex();
        let x = Tensor::<4>::ones([1, 32, 8, 8], &device);
        let g = Geometry { pad: [0; 4], stride: [2, 2], dilation: [1, 1] };
        assert!(conv(&x, &Tensor::ones([32, 16, 3, 3], &device), None, g).is_none(), "grouped weights");
        assert!(conv(&x, &Tensor::ones([4, 32, 9, 9], &device), None, g).is_none(), "a kernel past the input");
        let zero = Geometry { stride: [0, 1], ..g };
        assert!(conv(&x, &Tensor::ones([4, 32, 3, 3], &device), None, zero).is_none(), "stride 0");
    }
}
