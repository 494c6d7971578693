//! RAP's elementwise steps on Burn's flex CPU backend, each in one pass over its buffers.
//!
//! Written with Burn's tensor operations, the shares of one middle layer take about ten passes
//! over the layer's output (masks, quotients, fills, each a new buffer) and the uniform shift
//! eight over its input (a mask, its float copy, two sums reduced axis by axis, the product and
//! the difference, after the product `C = u ⊙ t` that it shifts). Here the shares are one pass
//! that reads `R`, `A`, `N` and writes both shares, and the product and its shift one reducing
//! pass and one mapping pass over `u` and `t`; each element gets the same
//! operations in the same order as the tensor form (the shift's sums are accumulated in `f64`).

use super::with_f32;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Elements per task.
const CHUNK: usize = 1 << 15;

/// `sd(a, b)`: `a / b`, and 0 where `b = 0`.
fn sd(a: f32, b: f32) -> f32 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// RAP's two shares of a middle layer (`src/rules/rap.rs`) from the relevance `r` and the
/// products `a = W⁺u`, `n = |W⁻|u` of one input branch `u ≥ 0`, all of one shape:
///
/// - dense layers: `sd(R, A)` and `R / (A + N)` where `N ≠ 0` (0 elsewhere);
/// - other layers: `sd(R⁺, A)` and `R⁻ / N + R / (A + N)` where `N ≠ 0` (0 elsewhere).
///
/// `None` where it does not apply (not flex `f32`, shapes differ).
pub(super) fn rap_shares(r: &Tensor<4>, a: &Tensor<4>, n: &Tensor<4>, dense: bool) -> Option<(Tensor<4>, Tensor<4>)> {
    let dims = r.dims();
    if a.dims() != dims || n.dims() != dims {
        return None;
    }
    let (s1, s2) = with_f32(r, |rs| {
        with_f32(a, |as_| {
            with_f32(n, |ns| {
                let len = rs.len();
                if as_.len() != len || ns.len() != len {
                    return None;
                }
                let (mut s1, mut s2) = (vec![0f32; len], vec![0f32; len]);
                s1.par_chunks_mut(CHUNK)
                    .zip(s2.par_chunks_mut(CHUNK))
                    .zip(rs.par_chunks(CHUNK).zip(as_.par_chunks(CHUNK)).zip(ns.par_chunks(CHUNK)))
                    .for_each(|((o1, o2), ((rc, ac), nc))| {
                        for ((((o1, o2), &r), &a), &n) in o1.iter_mut().zip(o2.iter_mut()).zip(rc).zip(ac).zip(nc) {
                            let nu = r / (a + n);
                            if dense {
                                *o1 = sd(r, a);
                                *o2 = if n == 0.0 { 0.0 } else { nu };
                            } else {
                                *o1 = sd(r.max(0.0), a);
                                *o2 = if n == 0.0 { 0.0 } else { r.min(0.0) / n + nu };
                            }
                        }
                    });
                Some((s1, s2))
            })
        })
    })?;
    let device = r.device();
    Some((Tensor::from_data(TensorData::new(s1, dims), &device), Tensor::from_data(TensorData::new(s2, dims), &device)))
}

/// RAP's uniform shift (Eq. 8–9) of `C = u ⊙ t` `[B, …]` to the per-sample totals `r_sum`
/// `[B, 1, 1, 1]`: `K = C − ψ·1[C ≠ 0]` with `ψ = sd(ΣC − ΣR, #{C ≠ 0})` per sample. The product
/// is formed in both passes and never stored. `None` where it does not apply.
pub(super) fn rap_shift(u: &Tensor<4>, t: &Tensor<4>, r_sum: &Tensor<4>) -> Option<Tensor<4>> {
    let dims = u.dims();
    let batch = dims[0];
    if t.dims() != dims || r_sum.dims() != [batch, 1, 1, 1] || batch == 0 {
        return None;
    }
    let totals = with_f32(r_sum, |s| Some(s.to_vec()))?;
    let out = with_f32(u, |us| {
        with_f32(t, |ts| {
            let per = us.len() / batch;
            if per == 0 || per * batch != us.len() || ts.len() != us.len() || totals.len() != batch {
                return None;
            }
            let mut out = vec![0f32; us.len()];
            for (((o, u), t), &total) in out.chunks_mut(per).zip(us.chunks(per)).zip(ts.chunks(per)).zip(&totals) {
                let (count, sum) = u
                    .par_chunks(CHUNK)
                    .zip(t.par_chunks(CHUNK))
                    .map(|(u, t)| {
                        u.iter().zip(t).fold((0u64, 0f64), |(k, s), (&u, &t)| {
                            let c = u * t;
                            (k + u64::from(c != 0.0), s + f64::from(c))
                        })
                    })
                    .reduce(|| (0, 0.0), |x, y| (x.0 + y.0, x.1 + y.1));
                let psi = sd(sum as f32 - total, count as f32);
                o.par_chunks_mut(CHUNK).zip(u.par_chunks(CHUNK).zip(t.par_chunks(CHUNK))).for_each(|(o, (u, t))| {
                    for ((o, &u), &t) in o.iter_mut().zip(u).zip(t) {
                        let c = u * t;
                        *o = if c != 0.0 { c - psi } else { c };
                    }
                });
            }
            Some(out)
        })
    })?;
    Some(Tensor::from_data(TensorData::new(out, dims), &u.device()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{neg, pos, safe_div, sample_sum};
    use burn::tensor::{Device, Distribution};

    /// Values with exact zeros in about a third of the places.
    fn sparse(dims: [usize; 4], device: &Device) -> Tensor<4> {
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), device);
        let keep = Tensor::<4>::random(dims, Distribution::Uniform(0.0, 1.0), device).greater_elem(0.33);
        x.mask_fill(keep.bool_not(), 0.0)
    }

    fn max_abs(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// The fused shares are the tensor-operation form's, element by element (the same
    /// operations in the same order: exactly equal), zeros of `A` and `N` included.
    #[test]
    fn the_shares_equal_the_tensor_form() {
        let device = Device::flex();
        let dims = [2, 5, 37, 41];
        let r = sparse(dims, &device);
        let a = sparse(dims, &device).abs();
        let n = sparse(dims, &device).abs();
        for dense in [true, false] {
            let (s1, s2) = rap_shares(&r, &a, &n, dense).expect("flex f32 applies");
            let n_zero = n.clone().equal_elem(0.0);
            let nu = r.clone() / (a.clone() + n.clone());
            let (w1, w2) = if dense {
                (safe_div(r.clone(), a.clone()), nu.mask_fill(n_zero, 0.0))
            } else {
                (safe_div(pos(r.clone()), a.clone()), (neg(r.clone()) / n.clone() + nu).mask_fill(n_zero, 0.0))
            };
            assert_eq!(max_abs(s1, w1), 0.0, "first share, dense {dense}");
            assert_eq!(max_abs(s2, w2), 0.0, "second share, dense {dense}");
        }
    }

    /// The fused shift is the tensor form's within the rounding of its sums, per sample; a
    /// sample that is all zero stays zero.
    #[test]
    fn the_shift_equals_the_tensor_form() {
        let device = Device::flex();
        let dims = [3, 4, 50, 70];
        // The third sample all zero.
        let mut values = crate::tensor::to_vec(&sparse(dims, &device));
        let per = values.len() / 3;
        values.iter_mut().skip(2 * per).for_each(|v| *v = 0.0);
        let c = Tensor::<4>::from_data(TensorData::new(values, dims), &device);
        let r_sum = Tensor::<4>::random([3, 1, 1, 1], Distribution::Normal(0.0, 10.0), &device);
        // C = u ⊙ t with the zeros of `c` in `u`.
        let u =
            c.clone().not_equal_elem(0.0).float() * Tensor::<4>::random(dims, Distribution::Uniform(0.5, 2.0), &device);
        let t = safe_div(c.clone(), u.clone());
        let c = u.clone() * t.clone();
        let got = rap_shift(&u, &t, &r_sum).expect("flex f32 applies");
        let mask = c.clone().not_equal_elem(0.0).float();
        let psi = safe_div(sample_sum(c.clone()) - r_sum.clone(), sample_sum(mask.clone()));
        let want = c.clone() - mask * psi;
        let scale = want.clone().abs().max().into_scalar::<f32>();
        assert!(max_abs(got.clone(), want) <= 1e-5 * scale);
        // Conservation: each sample now sums to its target where it has a nonzero entry.
        let sums = crate::tensor::sample_sums(&got);
        let targets = crate::tensor::to_vec(&r_sum);
        for (s, t) in sums.iter().zip(&targets).take(2) {
            assert!((s - t).abs() <= 1e-3 * t.abs().max(1.0), "{s} against {t}");
        }
        assert_eq!(sums[2], 0.0, "an all-zero sample stays zero");
    }
}
