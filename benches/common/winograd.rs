//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, CVPR 2016) on Burn's tensor
//! operations, for `benches/conv_paths.rs`: each 2×2 output tile is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//! of its 4×4 input tile `d`, so the channel products become 16 matrix products of 4/9 the
//! multiply-adds of the direct convolution, at the cost of the tile transforms (elementwise
//! passes). Not used by the crate: see docs/benchmarks.md (issue 21) for why.
//!
//! ```text
//! Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]   G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]   Aᵀ = [1 1 1 0; 0 1 −1 −1]
//! ```

use rap_attrib::burn::tensor::{Slice, Tensor};

/// A 3×3 kernel `[C_out, C_in, 3, 3]` in the transformed domain, `U = G g Gᵀ`, as
/// `[16, C_out, C_in]` (row `4·ξ + ν` holds `U[ξ, ν]`): computed once per weight.
pub fn transform_kernel(w: &Tensor<4>) -> Tensor<3> {
    let [co, ci, _, _] = w.dims();
    let g = |i: usize, j: usize| -> Tensor<2> { w.clone().narrow(2, i, 1).narrow(3, j, 1).reshape([co, ci]) };
    // The G combinations of three taps: (a, (a+b+c)/2, (a−b+c)/2, c).
    let combine = |a: Tensor<2>, b: Tensor<2>, c: Tensor<2>| -> [Tensor<2>; 4] {
        [a.clone(), (a.clone() + b.clone() + c.clone()).mul_scalar(0.5), (a - b + c.clone()).mul_scalar(0.5), c]
    };
    // P = G g, by column j of the kernel: P[ξ][j].
    let p: Vec<[Tensor<2>; 4]> = (0..3).map(|j| combine(g(0, j), g(1, j), g(2, j))).collect();
    let mut parts = Vec::with_capacity(16);
    for xi in 0..4 {
        let at = |j: usize| p.get(j).and_then(|c| c.get(xi)).cloned();
        if let (Some(a), Some(b), Some(c)) = (at(0), at(1), at(2)) {
            parts.extend(combine(a, b, c));
        }
    }
    Tensor::stack(parts, 0)
}

/// Every `2·a + offset`-th row (`axis` 2) or column (`axis` 3) of `x`, `n` of them.
fn every_other(x: &Tensor<4>, axis: usize, offset: usize, n: usize) -> Tensor<4> {
    let dims = x.dims();
    let mut s = [Slice::full(), Slice::full(), Slice::full(), Slice::full()];
    let start = offset as isize;
    let end = (offset + 2 * n - 1) as isize;
    if let Some(slot) = s.get_mut(axis) {
        *slot = Slice::new(start, Some(end.min(dims.get(axis).copied().unwrap_or(0) as isize)), 2);
    }
    x.clone().slice(s)
}

/// The four Bᵀ combinations of the tiles' rows (or columns): `t₀ = d₀ − d₂`, `t₁ = d₁ + d₂`,
/// `t₂ = d₂ − d₁`, `t₃ = d₁ − d₃`.
fn input_rows(d: [Tensor<4>; 4]) -> [Tensor<4>; 4] {
    let [d0, d1, d2, d3] = d;
    [d0 - d2.clone(), d1.clone() + d2.clone(), d2 - d1.clone(), d1 - d3]
}

/// `x` `[B, C_in, H, W]` convolved with the kernel transformed by [`transform_kernel`] (`u`
/// `[16, C_out, C_in]`), padding `padding` on every side, stride 1: `[B, C_out, H', W']` with
/// `H' = H + 2·padding − 2`.
pub fn conv3x3(x: Tensor<4>, u: &Tensor<3>, bias: Option<Tensor<1>>, padding: [usize; 2]) -> Tensor<4> {
    let [b, ci, h, w] = x.dims();
    let [_, co, _] = u.dims();
    let (ho, wo) = ((h + 2 * padding[0]).saturating_sub(2), (w + 2 * padding[1]).saturating_sub(2));
    let (nh, nw) = (ho.div_ceil(2), wo.div_ceil(2));
    // Padded so that every tile is whole: 2·n + 2 rows and columns.
    let xp = x.pad(
        [(padding[0], 2 * nh + 2 - h - padding[0]), (padding[1], 2 * nw + 2 - w - padding[1])],
        rap_attrib::burn::tensor::ops::PadMode::Constant(0.0),
    );
    let rows = input_rows([0, 1, 2, 3].map(|i| every_other(&xp, 2, i, nh)));
    let mut v = Vec::with_capacity(16);
    for t in &rows {
        v.extend(input_rows([0, 1, 2, 3].map(|j| every_other(t, 3, j, nw))));
    }
    // [16, B, C_in, T] → per tile position, one matrix product with U.
    let v: Tensor<5> = Tensor::stack(v, 0);
    let v: Tensor<4> = v.reshape([16, b, ci, nh * nw]);
    let u4: Tensor<4> = u.clone().reshape([16, 1, co, ci]).expand([16, b, co, ci]);
    let m = u4.matmul(v); // [16, B, C_out, T]
    let at = |k: usize| -> Tensor<4> { m.clone().narrow(0, k, 1).reshape([b, co, nh, nw]) };
    // Aᵀ M A: rows, then columns.
    let s0: Vec<Tensor<4>> = (0..4).map(|l| at(l) + at(4 + l) + at(8 + l)).collect();
    let s1: Vec<Tensor<4>> = (0..4).map(|l| at(4 + l) - at(8 + l) - at(12 + l)).collect();
    let cols = |s: [Tensor<4>; 4]| -> [Tensor<4>; 2] {
        let [a, bb, c, d] = s;
        [a + bb.clone() + c.clone(), bb - c - d]
    };
    let four = |v: Vec<Tensor<4>>| -> [Tensor<4>; 4] {
        let mut it = v.into_iter();
        let mut next = || it.next().unwrap_or_else(|| Tensor::zeros([b, co, nh, nw], &m.device()));
        [next(), next(), next(), next()]
    };
    let [y00, y01] = cols(four(s0));
    let [y10, y11] = cols(four(s1));
    let top: Tensor<5> = Tensor::stack(vec![y00, y01], 4);
    let bottom: Tensor<5> = Tensor::stack(vec![y10, y11], 4);
    let y: Tensor<6> = Tensor::stack(vec![top, bottom], 3); // [B, C_out, nH, 2, nW, 2]
    let y: Tensor<4> = y.reshape([b, co, 2 * nh, 2 * nw]);
    let y = if 2 * nh != ho || 2 * nw != wo { y.slice([0..b, 0..co, 0..ho, 0..wo]) } else { y };
    match bias {
        Some(bias) => y + bias.reshape([1, co, 1, 1]),
        None => y,
    }
}
