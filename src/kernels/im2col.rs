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
//! Blocks hold about `2²¹` unfolded values (8 MiB) whatever the input size; several samples
//! share a block where the map is small (ResNet-50's 14² and 7² stages at batch 8 multiply
//! once). The blocks, as many as a multiple of Rayon's threads, run one per task, each product
//! single-threaded; a small map at batch 1 is one block whose weight rows are split over the
//! threads instead. A call holds its blocks' products (as many values as its output) until they
//! are gathered into the output, which the layers' memory account counts before the call. The
//! adjoint multiplies the transposed weight into the unfolded space block by block and adds each
//! unfolded row onto its input channel (col2im).
//!
//! Measured against flex's convolution in `benches/conv_paths.rs` (docs/benchmarks.md): on
//! ResNet-50's strided layers flex's convolution takes 1.8–4.1× this kernel's time.

use super::{matmul, with_f32};
use burn::tensor::{Tensor, TensorData};
use gemm::Parallelism;
use rayon::prelude::*;
use std::ops::Range;

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

/// `conv_transpose2d(y, weight)` with one group: the adjoint of [`conv`] onto an input of
/// `h × w` (`x_hw`, which fixes the output padding), as one product per block into the unfolded
/// space followed by a scatter-add of each unfolded row onto its input channel (col2im). `None`
/// where it does not apply (not a flex `f32` tensor, grouped weights, a `y` that is not the
/// convolution's output for an `h × w` input).
pub(super) fn adjoint(y: &Tensor<4>, weight: &Tensor<4>, g: Geometry, x_hw: [usize; 2]) -> Option<Tensor<4>> {
    let device = y.device();
    let [batch, m, ho, wo] = y.dims();
    let [m_w, c, kh, kw] = weight.dims();
    let [h, w] = x_hw;
    if m_w != m || g.stride.contains(&0) || g.dilation.contains(&0) {
        return None;
    }
    let plan = Plan { batch, c, h, w, m, kernel: [kh, kw], g };
    let [pt, pb, pl, pr] = g.pad;
    if Plan::out_len(h, pt + pb, kh, g.stride[0], g.dilation[0])? != ho
        || Plan::out_len(w, pl + pr, kw, g.stride[1], g.dilation[1])? != wo
    {
        return None;
    }
    let out = with_f32(y, |ys| with_f32(weight, |ws| plan.run_adjoint(ys, ws, [ho, wo])))?;
    Some(Tensor::from_data(TensorData::new(out, [batch, c, h, w]), &device))
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
        // The pool's threads each run whole products (`gemm` single-threaded): `gemm`'s own
        // threading reached 0.4–0.9× of this split's rate on ResNet-50's shapes. Columns are cut
        // into a multiple of the thread count; where there are too few (a small map at batch 1)
        // the one block's weight rows are cut instead.
        let threads = rayon::current_num_threads().max(1);
        let budget = (UNFOLD_BUDGET / k).clamp(256, 1 << 16);
        let blocks = total.div_ceil(budget);
        let row_parts = if blocks == 1 && total <= 2 * m { threads.min(m) } else { 1 };
        let blocks = if row_parts == 1 { blocks.div_ceil(threads) * threads } else { 1 };
        let t = total.div_ceil(blocks);
        let blocks = total.div_ceil(t);
        let rows_per = m.div_ceil(row_parts);
        let block = |i: usize| -> Option<Vec<f32>> {
            let j0 = i * t;
            let cols_here = t.min(total - j0);
            let mut cols = vec![0f32; k * cols_here];
            let fill = |(r, row): (usize, &mut [f32])| self.unfold_row(x, r, j0, row, [ho, wo]);
            match blocks {
                1 => cols.par_chunks_mut(cols_here).enumerate().for_each(fill),
                _ => cols.chunks_mut(cols_here).enumerate().for_each(fill),
            }
            let mut dst = vec![0f32; m * cols_here];
            // The `part`-th chunk of `rows_per` weight rows times the unfolded block.
            let product = |(part, d): (usize, &mut [f32])| {
                let lhs = weight.get(part * rows_per * k..)?;
                matmul(d, [d.len() / cols_here, cols_here, k], lhs, [k, 1], &cols, cols_here, false, Parallelism::None)
            };
            match row_parts {
                1 => product((0, &mut dst))?,
                _ => dst.par_chunks_mut(rows_per * cols_here).enumerate().try_for_each(product)?,
            }
            Some(dst)
        };
        let shift = |channel: usize| bias.and_then(|bs| bs.get(channel)).copied().unwrap_or(0.0);
        if batch == 1 && blocks == 1 {
            // The one block is the output, `[m, n]`, already in place.
            let mut out = block(0)?;
            if bias.is_some() {
                out.par_chunks_mut(n).enumerate().for_each(|(i, row)| row.iter_mut().for_each(|v| *v += shift(i)));
            }
            return Some((out, [1, m, ho, wo]));
        }
        let done: Vec<Vec<f32>> = (0..blocks).into_par_iter().map(block).collect::<Option<_>>()?;
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

    /// The adjoint's output buffer `[batch, c, h, w]` from `y` `[batch, m, ho, wo]`, or `None`
    /// if a buffer does not hold what the shapes say.
    fn run_adjoint(&self, y: &[f32], weight: &[f32], [ho, wo]: [usize; 2]) -> Option<Vec<f32>> {
        let &Plan { batch, c, h, w, m, kernel: [kh, kw], .. } = self;
        let k = c.checked_mul(kh)?.checked_mul(kw)?;
        let n = ho.checked_mul(wo)?;
        let total = batch.checked_mul(n)?;
        let plane = h.checked_mul(w)?;
        if total == 0
            || k == 0
            || m == 0
            || y.len() != total.checked_mul(m)?
            || weight.len() != m.checked_mul(k)?
            || batch.checked_mul(c)?.checked_mul(plane)? == 0
        {
            return None;
        }
        // Blocks run one after another (two may scatter onto the same sample); within one, the
        // unfolded rows are split over the threads for the product and the input channels for
        // the scatter, each product single-threaded.
        let threads = rayon::current_num_threads().max(1);
        let t = (UNFOLD_BUDGET / k).clamp(256, 1 << 16).min(total);
        let rows_per = k.div_ceil(threads.min(k));
        let mut out = vec![0f32; batch * c * plane];
        let mut j0 = 0;
        while j0 < total {
            let cols_here = t.min(total - j0);
            // `y`'s columns `j0..j0 + cols_here` as one `[m, cols_here]` matrix: `y` itself at
            // batch 1, else gathered sample by sample.
            let gathered: Vec<f32>;
            let (rhs, rhs_rs) = if batch == 1 {
                (y.get(j0..)?, n)
            } else {
                let mut g = vec![0f32; m * cols_here];
                g.par_chunks_mut(cols_here).enumerate().for_each(|(i, row)| {
                    let mut done = 0;
                    while done < cols_here {
                        let (b, q) = ((j0 + done) / n, (j0 + done) % n);
                        let len = (n - q).min(cols_here - done);
                        if let (Some(d), Some(src)) =
                            (row.get_mut(done..done + len), y.get((b * m + i) * n + q..(b * m + i) * n + q + len))
                        {
                            d.copy_from_slice(src);
                        }
                        done += len;
                    }
                });
                gathered = g;
                (gathered.as_slice(), cols_here)
            };
            // The `part`-th chunk of `rows_per` unfolded rows: those columns of the weight, read
            // transposed, times `y`'s block.
            let mut cols = vec![0f32; k * cols_here];
            cols.par_chunks_mut(rows_per * cols_here).enumerate().try_for_each(|(part, d)| {
                let lhs = weight.get(part * rows_per..)?;
                matmul(d, [d.len() / cols_here, cols_here, m], lhs, [1, k], rhs, rhs_rs, false, Parallelism::None)
            })?;
            out.par_chunks_mut(plane).enumerate().for_each(|(p, dst)| {
                let (b, channel) = (p / c, p % c);
                // This block's columns of sample `b`, if any.
                let (first, last) = ((b * n).max(j0), ((b + 1) * n).min(j0 + cols_here));
                if first < last {
                    self.scatter(&cols, cols_here, channel, [first - j0, last - j0], first, dst, [ho, wo]);
                }
            });
            j0 += cols_here;
        }
        Some(out)
    }

    /// Adds the unfolded rows `(channel, ky, kx)` of a block (`cols_here` columns each), columns
    /// `from..to` (output positions from `j` on, counted over the batch), onto the channel's
    /// input plane `dst` where each position's window reads it: the transpose of
    /// [`Self::unfold_row`].
    #[allow(clippy::too_many_arguments)]
    fn scatter(
        &self,
        cols: &[f32],
        cols_here: usize,
        channel: usize,
        [from, to]: [usize; 2],
        j: usize,
        dst: &mut [f32],
        out_hw: [usize; 2],
    ) {
        let &Plan { w, kernel: [kh, kw], g, .. } = self;
        let sw = g.stride[1];
        for (tap, ky, kx) in (0..kh * kw).map(|tap| (tap, tap / kw, tap % kw)) {
            let Some(row) = cols.get((channel * kh * kw + tap) * cols_here..).and_then(|r| r.get(from..to)) else {
                continue;
            };
            self.runs(j, row.len(), [ky, kx], out_hw, |_, iy, span, ix0| {
                let d = dst.get_mut(iy * w + ix0..(iy + 1) * w);
                if let (Some(s), Some(d)) = (row.get(span), d) {
                    match sw {
                        1 => d.iter_mut().zip(s).for_each(|(d, &v)| *d += v),
                        _ => d.iter_mut().step_by(sw).zip(s).for_each(|(d, &v)| *d += v),
                    }
                }
            });
        }
    }

    /// Row `r = (channel, ky, kx)` of the unfolded block that starts at position `j0`: for each
    /// position `(b, oy, ox)`, the input value its window reads at that tap, or 0 in the padding
    /// (the block starts zeroed).
    fn unfold_row(&self, x: &[f32], r: usize, j0: usize, row: &mut [f32], out_hw: [usize; 2]) {
        let &Plan { c, h, w, kernel: [kh, kw], g, .. } = self;
        let (channel, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
        let sw = g.stride[1];
        let len = row.len();
        self.runs(j0, len, [ky, kx], out_hw, |b, iy, span, ix0| {
            let line = ((b * c + channel) * h + iy) * w;
            if let (Some(d), Some(src)) = (row.get_mut(span), x.get(line + ix0..line + w)) {
                match sw {
                    1 => d.iter_mut().zip(src).for_each(|(d, &v)| *d = v),
                    _ => d.iter_mut().zip(src.iter().step_by(sw)).for_each(|(d, &v)| *d = v),
                }
            }
        });
    }

    /// The runs of output positions that read inside the input at tap `(ky, kx)`, among the
    /// `len` positions from `j0` on (counted over the batch): for each output row, the positions
    /// `ox` whose input column `ox·sw + kx·dw − left` lies in `[0, w)`, when the row's input row
    /// `oy·sh + ky·dh − top` lies in `[0, h)`. `f(b, iy, offsets, ix0)` gets the sample, the
    /// input row, the run's offsets from `j0` and the input column of its first position (the
    /// next ones every `sw` columns). What the unfolding copies and the scatter adds back.
    fn runs(
        &self,
        j0: usize,
        len: usize,
        [ky, kx]: [usize; 2],
        [ho, wo]: [usize; 2],
        mut f: impl FnMut(usize, usize, Range<usize>, usize),
    ) {
        let &Plan { h, w, g, .. } = self;
        let n = ho * wo;
        let (oy_off, ox_off) = (ky * g.dilation[0], kx * g.dilation[1]);
        let (sw, left) = (g.stride[1], g.pad[2]);
        // The output columns whose input column is inside: `[lo, hi)` of every row.
        let lo = left.saturating_sub(ox_off).div_ceil(sw);
        let hi = (w + left).checked_sub(ox_off + 1).map_or(0, |last| last / sw + 1);
        let mut done = 0;
        while done < len {
            let (b, q) = ((j0 + done) / n, (j0 + done) % n);
            let (oy, ox0) = (q / wo, q % wo);
            let run = (wo - ox0).min(len - done);
            let iy = (oy * g.stride[0] + oy_off).checked_sub(g.pad[0]).filter(|&iy| iy < h);
            let (first, last) = (lo.max(ox0), hi.min(ox0 + run));
            if let Some(iy) = iy
                && first < last
            {
                f(b, iy, done + first - ox0..done + last - ox0, first * sw + ox_off - left);
            }
            done += run;
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

    /// The adjoint against Burn's transposed convolution, element by element, for the same
    /// geometries, output padding included, and batches whose blocks hold several samples or
    /// part of one.
    #[test]
    fn the_scattered_product_equals_burns_transposed_convolution() {
        use burn::tensor::module::conv_transpose2d;
        use burn::tensor::ops::ConvTransposeOptions;
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        let mut checked = 0;
        for (kh, kw) in [(3, 3), (1, 1), (7, 7), (2, 3)] {
            for (stride, dilation) in [([2, 2], [1, 1]), ([1, 2], [1, 1]), ([3, 2], [2, 1]), ([1, 1], [2, 2])] {
                for pad in [[0, 0], [kh / 2, kw / 2]] {
                    for (batch, h, w) in [(1, 9, 6), (3, 11, 13), (2, 70, 66)] {
                        let (c, m) = (17, 20);
                        let stack = Tensor::<4>::random([3 * m, c, kh, kw], normal, &device);
                        let weight = stack.narrow(0, m, m);
                        let g = Geometry { pad: [pad[0], pad[0], pad[1], pad[1]], stride, dilation };
                        let (Some(ho), Some(wo)) = (
                            Plan::out_len(h, 2 * pad[0], kh, stride[0], dilation[0]),
                            Plan::out_len(w, 2 * pad[1], kw, stride[1], dilation[1]),
                        ) else {
                            continue;
                        };
                        let y = Tensor::<4>::random([batch, m, wo, ho], normal, &device).swap_dims(2, 3);
                        let ours = adjoint(&y, &weight, g, [h, w]).expect("the adjoint applies");
                        // The output padding that gives back `h × w`.
                        let out_pad = [
                            h + 2 * pad[0] - dilation[0] * (kh - 1) - 1 - (ho - 1) * stride[0],
                            w + 2 * pad[1] - dilation[1] * (kw - 1) - 1 - (wo - 1) * stride[1],
                        ];
                        let options = ConvTransposeOptions::new(stride, pad, out_pad, dilation, 1);
                        let burns = conv_transpose2d(y, weight, None, options);
                        assert_eq!(ours.dims(), burns.dims());
                        let scale = burns.clone().abs().max().into_scalar::<f32>();
                        let err = (ours - burns).abs().max().into_scalar::<f32>() / scale;
                        assert!(err < 1e-5, "k{kh}x{kw} s{stride:?} d{dilation:?} pad {pad:?} batch {batch}: {err:e}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 80, "{checked} configurations checked");
        // A `y` that is not the convolution's output for the input size asked for.
        let y = Tensor::<4>::ones([1, 4, 5, 5], &device);
        let g = Geometry { pad: [0; 4], stride: [2, 2], dilation: [1, 1] };
        assert!(adjoint(&y, &Tensor::ones([4, 3, 3, 3], &device), g, [20, 20]).is_none());
        assert!(adjoint(&y, &Tensor::ones([5, 3, 3, 3], &device), g, [11, 11]).is_none(), "channels differ");
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
