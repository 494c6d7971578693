//! Every rule, element by element, against an independent implementation.
//!
//! For random single Linear and Conv2d layers (kernel 1–3, stride 1–2, padding 0–2, dilation
//! 1–2, groups 1–3, with bias), this test writes the layer as a dense matrix `M` (`[outputs,
//! inputs]`, the convolution unfolded here from its definition) and each rule as its equation
//! over `M` in f64, then compares the crate's result at every element:
//! `|R − R_oracle| ≤ 1e-4 · max|R_oracle|` per sample (exactly 0 where the oracle is 0 on a whole
//! sample).
//!
//! The inputs are multiples of 1/4 and the weights multiples of 1/8 (a fifth of them 0), so
//! that every forward sum is exact in f32 as in f64: zero denominators are the same zeros in
//! both, and each rule's handling of them is tested, not the rounding. The relevance, which
//! enters no denominator, is continuous. Each draw has a sample of
//! both signs with zeros, a non-negative sample and an all-zero sample, and some outputs whose
//! weights are all 0 (so `z = b` or `z = 0`). Each rule runs once with the input's sign unknown
//! and once on a non-negative input with `input_nonnegative` set.
//!
//! Each rule also has wrong variants of its equation (the bias share left out, the negative
//! branch of γ dropped, padding counted by Flat, …); the test fails unless every variant
//! disagrees with the crate on some draw, so the comparison can tell them apart.

use crate::common;

use common::{Rng, device};
use rap_attrib::burn::module::Param;
use rap_attrib::burn::nn::conv::Conv2dConfig;
use rap_attrib::burn::nn::{LinearConfig, PaddingConfig2d};
use rap_attrib::burn::tensor::{Device, Tensor, TensorData};
use rap_attrib::kit::to_vec;
use rap_attrib::rules::{AlphaBeta, Bounds, Epsilon, Flat, Gamma, Lrp0, Rap, Rule, Sharing, ZBeta, ZPlus};
use rap_attrib::{LayerType, LinearLayer, RuleContext};
use std::collections::HashMap;

const TOL: f64 = 1e-4;
const DRAWS: u64 = 40;

/// One layer as a dense map over flattened per-sample vectors.
struct Dense {
    n_in: usize,
    n_out: usize,
    /// `m[j * n_in + i]`: the weight from input `i` to output `j`.
    m: Vec<f64>,
    /// 1 where input `i` is in output `j`'s receptive field (not padding), else 0.
    field: Vec<f64>,
    /// Per output (the channel's bias at every position).
    bias: Vec<f64>,
    is_linear: bool,
}

impl Dense {
    fn map(&self, f: impl Fn(f64) -> f64) -> Vec<f64> {
        self.m.iter().map(|&w| f(w)).collect()
    }
    fn fwd(&self, m: &[f64], x: &[f64]) -> Vec<f64> {
        (0..self.n_out).map(|j| (0..self.n_in).map(|i| m[j * self.n_in + i] * x[i]).sum()).collect()
    }
    fn tr(&self, m: &[f64], s: &[f64]) -> Vec<f64> {
        (0..self.n_in).map(|i| (0..self.n_out).map(|j| m[j * self.n_in + i] * s[j]).sum()).collect()
    }
}

fn pos(v: f64) -> f64 {
    v.max(0.0)
}
fn neg(v: f64) -> f64 {
    v.min(0.0)
}
fn sd(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}
fn stab(z: f64, e: f64) -> f64 {
    z + if z >= 0.0 { e } else { -e }
}
fn vpos(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| pos(v)).collect()
}
fn vneg(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| neg(v)).collect()
}
fn mul(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}
fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}
fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}
fn scale(a: &[f64], k: f64) -> Vec<f64> {
    a.iter().map(|x| x * k).collect()
}
fn zip(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
}

/// `x ⊙ Mᵀ (R ⊘ stab(M x + b))` for a given input, weight, bias and divide.
fn z_rule(d: &Dense, x: &[f64], m: &[f64], b: Option<&[f64]>, r: &[f64], div: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let mut z = d.fwd(m, x);
    if let Some(b) = b {
        z = add(&z, b);
    }
    mul(x, &d.tr(m, &zip(r, &z, div)))
}

/// The rule's equation over the dense matrix, for one sample; `variant` 0 is the rule, others
/// are wrong versions of it.
fn oracle(rule: &str, variant: usize, d: &Dense, x: &[f64], r: &[f64], output_layer: bool) -> Vec<f64> {
    let (wp, wn, w) = (d.map(pos), d.map(neg), d.m.clone());
    let (xp, xn) = (vpos(x), vneg(x));
    let b = &d.bias;
    let (bp, bn) = (vpos(b), vneg(b));
    let zeros = vec![0.0; d.n_out];
    match rule {
        "lrp0" => z_rule(d, x, &w, Some(if variant == 0 { b } else { &zeros }), r, sd),
        "epsilon" => {
            let e = if variant == 0 { 0.05 } else { 0.0 };
            z_rule(d, x, &w, Some(b), r, |r, z| if e == 0.0 { sd(r, z) } else { r / stab(z, e) })
        }
        "zplus" | "zplus_zennit" => {
            let zennit = rule == "zplus_zennit";
            let mut z = add(&d.fwd(&wp, &xp), &d.fwd(&wn, &xn));
            if zennit && variant == 0 {
                z = add(&z, &bp);
            }
            let s: Vec<f64> = if zennit { zip(r, &z, |r, z| r / stab(z, 1e-6)) } else { zip(r, &z, sd) };
            add(&mul(&xp, &d.tr(&wp, &s)), &mul(&xn, &d.tr(&wn, &s)))
        }
        "ab21" | "ab10" => {
            let (alpha, beta) = if rule == "ab21" { (2.0, 1.0) } else { (1.0, 0.0) };
            let part = |u: &[f64], m: &[f64]| z_rule(d, u, m, None, r, sd);
            let (act, inh) = if variant == 0 {
                (add(&part(&xp, &wp), &part(&xn, &wn)), add(&part(&xp, &wn), &part(&xn, &wp)))
            } else {
                // Wrong: x⁺ and x⁻ pooled in one denominator, as Zennit does.
                let zp = add(&d.fwd(&wp, &xp), &d.fwd(&wn, &xn));
                let zn = add(&d.fwd(&wn, &xp), &d.fwd(&wp, &xn));
                let (sp, sn) = (zip(r, &zp, sd), zip(r, &zn, sd));
                (
                    add(&mul(&xp, &d.tr(&wp, &sp)), &mul(&xn, &d.tr(&wn, &sp))),
                    add(&mul(&xp, &d.tr(&wn, &sn)), &mul(&xn, &d.tr(&wp, &sn))),
                )
            };
            sub(&scale(&act, alpha), &scale(&inh, beta))
        }
        "ab21_zennit" => {
            let (alpha, beta) = (2.0, 1.0);
            let mut zp = add(&d.fwd(&wp, &xp), &d.fwd(&wn, &xn));
            let mut zn = add(&d.fwd(&wn, &xp), &d.fwd(&wp, &xn));
            if variant == 0 {
                zp = add(&zp, &bp);
                zn = add(&zn, &bn);
            }
            let sp = zip(r, &zp, |r, z| r / stab(z, 1e-6));
            let sn = zip(r, &zn, |r, z| r / stab(z, 1e-6));
            let act = add(&mul(&xp, &d.tr(&wp, &sp)), &mul(&xn, &d.tr(&wn, &sp)));
            let inh = add(&mul(&xp, &d.tr(&wn, &sn)), &mul(&xn, &d.tr(&wp, &sn)));
            sub(&scale(&act, alpha), &scale(&inh, beta))
        }
        "gamma" => {
            let g = 0.25;
            let up: Vec<f64> = d.m.iter().map(|&w| w + g * pos(w)).collect();
            let down: Vec<f64> = d.m.iter().map(|&w| w + g * neg(w)).collect();
            let b_up: Vec<f64> = b.iter().map(|&v| v + g * pos(v)).collect();
            let b_down: Vec<f64> = b.iter().map(|&v| v + g * neg(v)).collect();
            let z = add(&d.fwd(&w, x), b);
            let z_up = add(&add(&d.fwd(&up, &xp), &d.fwd(&down, &xn)), &b_up);
            let z_down = add(&add(&d.fwd(&down, &xp), &d.fwd(&up, &xn)), &b_down);
            let s_up: Vec<f64> =
                (0..d.n_out).map(|j| if z[j] > 0.0 { r[j] / stab(z_up[j], 1e-6) } else { 0.0 }).collect();
            let s_down: Vec<f64> = (0..d.n_out)
                .map(|j| if z[j] < 0.0 && variant == 0 { r[j] / stab(z_down[j], 1e-6) } else { 0.0 })
                .collect();
            let a = add(&mul(&xp, &d.tr(&up, &s_up)), &mul(&xn, &d.tr(&down, &s_up)));
            add(&a, &add(&mul(&xp, &d.tr(&down, &s_down)), &mul(&xn, &d.tr(&up, &s_down))))
        }
        "gamma_classic" => {
            let g = if variant == 0 { 0.25 } else { 0.0 };
            let rho: Vec<f64> = d.m.iter().map(|&w| w + g * pos(w)).collect();
            let rb: Vec<f64> = b.iter().map(|&v| v + g * pos(v)).collect();
            z_rule(d, x, &rho, Some(&rb), r, |r, z| r / stab(z, 1e-6))
        }
        "zbeta" | "zbeta_lrp" | "zbeta_zennit" => {
            let (lo, hi) = if rule == "zbeta_zennit" {
                (-1.0, 1.0)
            } else {
                (x.iter().cloned().fold(f64::INFINITY, f64::min), x.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
            };
            // The per-connection term t_ji = x_i w_ji − l w⁺_ji − h w⁻_ji of Z_j = Σ_i t_ji and of
            // R_i = Σ_j t_ji S_j (exact for these inputs, so Z = 0 is the same zero as the crate's).
            let t: Vec<f64> = (0..d.n_out * d.n_in)
                .map(|k| {
                    let (wv, xi) = (d.m[k], x[k % d.n_in]);
                    if variant == 0 { xi * wv - lo * pos(wv) - hi * neg(wv) } else { xi * wv }
                })
                .collect();
            let z = d.fwd(&t, &vec![1.0; d.n_in]);
            let s: Vec<f64> = match rule {
                "zbeta" => zip(r, &z, sd),
                "zbeta_lrp" => zip(r, &z, |r, z| r / (z + 1e-9)),
                _ => zip(r, &z, |r, z| r / stab(z, 1e-6)),
            };
            // Wrong variant: the bound terms left out of the numerator.
            d.tr(&t, &s)
        }
        "flat" | "flat_zennit" => {
            let ones = vec![1.0; d.n_in];
            let z = if variant == 0 {
                d.fwd(&d.field, &ones)
            } else {
                // Wrong: padding counted (every field as large as the largest).
                let n = d.fwd(&d.field, &ones).into_iter().fold(0.0, f64::max);
                vec![n; d.n_out]
            };
            let s: Vec<f64> = if rule == "flat" { zip(r, &z, sd) } else { zip(r, &z, |r, z| r / stab(z, 1e-6)) };
            d.tr(&d.field, &s)
        }
        "rap" if output_layer && d.is_linear => rap_output(d, x, r, variant),
        "rap" => rap_middle(d, x, r, variant),
        other => panic!("no oracle for {other}"),
    }
}

/// RAP's output Linear layer (the reference's Eq. 5–6), written from `rap-reference.md` §1.
fn rap_output(d: &Dense, x: &[f64], r: &[f64], variant: usize) -> Vec<f64> {
    let (wp, wn) = (d.map(pos), d.map(neg));
    let (xp, xn) = (vpos(x), vneg(x));
    let p = add(&d.fwd(&wp, &xp), &d.fwd(&wn, &xn));
    let n = add(&d.fwd(&wn, &xp), &d.fwd(&wp, &xn));
    let z = add(&p, &n);
    let a = d.fwd(&wp, &xp);
    let bb = d.fwd(&wn, &xp);
    let bias = if variant == 0 { d.bias.clone() } else { vec![0.0; d.n_out] };
    let c1: Vec<f64> = (0..d.n_out).map(|j| r[j] * sd(bias[j] * sd(p[j], z[j]), a[j])).collect();
    let c2: Vec<f64> = (0..d.n_out).map(|j| r[j] * sd(bias[j] * sd(n[j], z[j]), bb[j])).collect();
    let rt = add(&mul(x, &d.tr(&d.m, r)), &add(&mul(&xp, &d.tr(&wp, &c1)), &mul(&xp, &d.tr(&wn, &c2))));
    let total: f64 = rt.iter().sum();
    let abs: f64 = rt.iter().map(|v| v.abs()).sum();
    rt.iter().map(|v| v.abs() * sd(total, abs)).collect()
}

/// The scale of a sample's error: `max|R_oracle|`, except for RAP's output step, whose
/// normalisation `|R̃|·ΣR̃/Σ|R̃|` cancels in `ΣR̃`: there, `max|R̃|`.
fn error_scale(rule: &str, d: &Dense, x: &[f64], r: &[f64], output_layer: bool, want: &[f64]) -> f64 {
    let max = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    if rule == "rap" && output_layer && d.is_linear {
        let rt = mul(x, &d.tr(&d.m, r));
        return rt.iter().fold(max, |m, v| m.max(v.abs()));
    }
    max
}

/// RAP's middle layers (Eq. 7–9), written from `rap-reference.md` §3.
fn rap_middle(d: &Dense, x: &[f64], r: &[f64], variant: usize) -> Vec<f64> {
    let (wp, wn_abs) = (d.map(pos), d.map(|w| neg(w).abs()));
    let r_sum: f64 = r.iter().sum();
    let mut out = vec![0.0; d.n_in];
    for u in [vpos(x), vneg(x).iter().map(|v| v.abs()).collect::<Vec<_>>()] {
        let a = d.fwd(&wp, &u);
        let n = d.fwd(&wn_abs, &u);
        let live: Vec<f64> = (0..d.n_out).map(|j| if a[j] + n[j] != 0.0 { 1.0 } else { 0.0 }).collect();
        let nu: Vec<f64> = (0..d.n_out).map(|j| sd(r[j] * sd(n[j], a[j] + n[j]), n[j])).collect();
        // The Linear form sends both signs of R through A; the Conv2d form R⁻ through N.
        let linear_form = d.is_linear != (variant == 1);
        let c = if linear_form {
            let s1: Vec<f64> = (0..d.n_out).map(|j| sd(r[j] * live[j], a[j])).collect();
            mul(&u, &add(&d.tr(&wp, &s1), &d.tr(&wn_abs, &nu)))
        } else {
            let s1: Vec<f64> = (0..d.n_out).map(|j| sd(pos(r[j]) * live[j], a[j])).collect();
            let s2: Vec<f64> = (0..d.n_out).map(|j| sd(neg(r[j]) * live[j], n[j]) + nu[j]).collect();
            mul(&u, &add(&d.tr(&wp, &s1), &d.tr(&wn_abs, &s2)))
        };
        let count = c.iter().filter(|v| **v != 0.0).count() as f64;
        let psi = sd(c.iter().sum::<f64>() - r_sum, count);
        let shift = if variant == 2 { 0.0 } else { psi };
        for (o, ci) in out.iter_mut().zip(&c) {
            *o += ci - if *ci != 0.0 { shift } else { 0.0 };
        }
    }
    out
}

/// The rules under test: a name, the crate's rule, and how many wrong variants the oracle has.
fn rules() -> Vec<(&'static str, Box<dyn Rule>, usize)> {
    vec![
        ("lrp0", Box::new(Lrp0::new()), 1),
        ("epsilon", Box::new(Epsilon::new(0.05).unwrap()), 1),
        ("zplus", Box::new(ZPlus::new()), 0),
        ("zplus_zennit", Box::new(ZPlus::zennit()), 1),
        ("ab21", Box::new(AlphaBeta::new(2.0, 1.0).unwrap()), 1),
        ("ab10", Box::new(AlphaBeta::new(1.0, 0.0).unwrap()), 1),
        ("ab21_zennit", Box::new(AlphaBeta::zennit(2.0, 1.0).unwrap()), 1),
        ("gamma", Box::new(Gamma::new(0.25).unwrap()), 1),
        ("gamma_classic", Box::new(Gamma::classic(0.25, 1e-6).unwrap()), 1),
        ("zbeta", Box::new(ZBeta::new(Bounds::PerSample)), 1),
        ("zbeta_lrp", Box::new(ZBeta::reference_lrp()), 1),
        ("zbeta_zennit", Box::new(ZBeta::zennit(Bounds::Global(-1.0, 1.0))), 1),
        ("flat", Box::new(Flat::new()), 1),
        ("flat_zennit", Box::new(Flat::zennit()), 1),
        ("rap", Box::new(Rap::default()), 2),
    ]
}

/// A random layer: the crate's layer, its dense matrix and the input shape.
struct Drawn {
    layer: Box<dyn LinearLayer>,
    dense: Dense,
    x_shape: [usize; 4],
    layer_type: LayerType,
    what: String,
}

/// A multiple of `1/den` in `[-k/den, k/den]`, 0 with probability `zero`.
fn quantized(rng: &mut Rng, k: usize, den: f64, zero: f64) -> f64 {
    if rng.unit() < zero { 0.0 } else { (rng.int(0, 2 * k) as f64 - k as f64) / den }
}

fn draw(seed: u64, conv: bool, device: &Device) -> Drawn {
    let mut rng = Rng::new(seed);
    if !conv {
        let (fin, fout) = (rng.int(1, 12), rng.int(1, 10));
        let mut w: Vec<f64> = (0..fin * fout).map(|_| quantized(&mut rng, 8, 8.0, 0.2)).collect();
        // Some outputs with all-zero weights: z = b there.
        for j in 0..fout {
            if rng.unit() < 0.2 {
                w[j * fin..(j + 1) * fin].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        let bias: Vec<f64> = (0..fout).map(|_| quantized(&mut rng, 4, 4.0, 0.3)).collect();
        let mut lin = LinearConfig::new(fin, fout).init(device);
        let wt: Tensor<2> =
            Tensor::from_data(TensorData::new(w.iter().map(|&v| v as f32).collect::<Vec<_>>(), [fout, fin]), device);
        lin.weight = Param::from_tensor(wt.transpose());
        lin.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias.iter().map(|&v| v as f32).collect::<Vec<_>>(), [fout]),
            device,
        )));
        let field = w.iter().map(|_| 1.0).collect();
        return Drawn {
            layer: Box::new(lin),
            dense: Dense { n_in: fin, n_out: fout, m: w, field, bias, is_linear: true },
            x_shape: [3, fin, 1, 1],
            layer_type: LayerType::Linear,
            what: format!("Linear({fin}, {fout})"),
        };
    }
    let groups = rng.int(1, 3);
    let (cin, cout) = (groups * rng.int(1, 2), groups * rng.int(1, 2));
    let (kh, kw) = (rng.int(1, 3), rng.int(1, 3));
    let (s, p, dil) = (rng.int(1, 2), rng.int(0, 2), rng.int(1, 2));
    let min_h = dil * (kh - 1) + 1;
    let min_w = dil * (kw - 1) + 1;
    let h = rng.int(min_h.saturating_sub(2 * p).max(1), 7);
    let wd = rng.int(min_w.saturating_sub(2 * p).max(1), 7);
    let oh = (h + 2 * p - dil * (kh - 1) - 1) / s + 1;
    let ow = (wd + 2 * p - dil * (kw - 1) - 1) / s + 1;
    let cig = cin / groups;
    let cog = cout / groups;
    let mut w: Vec<f64> = (0..cout * cig * kh * kw).map(|_| quantized(&mut rng, 8, 8.0, 0.2)).collect();
    for co in 0..cout {
        if rng.unit() < 0.15 {
            let n = cig * kh * kw;
            w[co * n..(co + 1) * n].iter_mut().for_each(|v| *v = 0.0);
        }
    }
    let bias: Vec<f64> = (0..cout).map(|_| quantized(&mut rng, 4, 4.0, 0.3)).collect();
    // The convolution unfolded from its definition:
    // y[co, oy, ox] = b[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[g·cig + ci, oy·s − p + ky·d, ox·s − p + kx·d].
    let (n_in, n_out) = (cin * h * wd, cout * oh * ow);
    let mut m = vec![0.0; n_out * n_in];
    let mut field = vec![0.0; n_out * n_in];
    let mut dense_bias = vec![0.0; n_out];
    for co in 0..cout {
        let g = co / cog;
        for oy in 0..oh {
            for ox in 0..ow {
                let j = (co * oh + oy) * ow + ox;
                dense_bias[j] = bias[co];
                for ci in 0..cig {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * s + ky * dil) as isize - p as isize;
                            let ix = (ox * s + kx * dil) as isize - p as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            let i = ((g * cig + ci) * h + iy as usize) * wd + ix as usize;
                            m[j * n_in + i] += w[((co * cig + ci) * kh + ky) * kw + kx];
                            field[j * n_in + i] += 1.0;
                        }
                    }
                }
            }
        }
    }
    let mut layer = Conv2dConfig::new([cin, cout], [kh, kw])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_dilation([dil, dil])
        .with_groups(groups)
        .init(device);
    layer.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.iter().map(|&v| v as f32).collect::<Vec<_>>(), [cout, cig, kh, kw]),
        device,
    ));
    layer.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.iter().map(|&v| v as f32).collect::<Vec<_>>(), [cout]),
        device,
    )));
    Drawn {
        layer: Box::new(layer),
        dense: Dense { n_in, n_out, m, field, bias: dense_bias, is_linear: false },
        x_shape: [3, cin, h, wd],
        layer_type: LayerType::Conv2d,
        what: format!("Conv2d({cin}→{cout}, k {kh}x{kw}, s {s}, p {p}, d {dil}, g {groups}, {h}x{wd})"),
    }
}

/// Compares one batch (per sample: the oracle and its error scale); `Err` names the first
/// element out of tolerance.
fn compare(got: &[f32], want: &[(Vec<f64>, f64)]) -> Result<f64, String> {
    let per = want[0].0.len();
    let mut worst = 0f64;
    for (b, (w, max)) in want.iter().enumerate() {
        let max = *max;
        for (i, &wv) in w.iter().enumerate() {
            let g = got[b * per + i] as f64;
            if !g.is_finite() {
                return Err(format!("sample {b} element {i}: {g}"));
            }
            let d = (g - wv).abs();
            if d > TOL * max {
                return Err(format!("sample {b} element {i}: {g} vs oracle {wv} (max |R| {max:.3e})"));
            }
            if max > 0.0 {
                worst = worst.max(d / max);
            }
        }
    }
    Ok(worst)
}

#[test]
fn every_rule_matches_its_dense_f64_equation_at_every_element() {
    let device = device();
    let mut failures = Vec::new();
    let mut worst: HashMap<&str, f64> = HashMap::new();
    // Per rule and variant: whether the variant was told apart from the crate on some draw.
    let mut caught: HashMap<(&str, usize), bool> = HashMap::new();
    let mut runs = 0;
    for seed in 0..DRAWS {
        for conv in [false, true] {
            let d = draw(seed * 2 + u64::from(conv), conv, &device);
            let mut rng = Rng::new(seed ^ 0xABCD);
            let per = d.dense.n_in;
            // Sample 0: both signs and zeros; sample 1: non-negative; sample 2: all zero.
            let mut x: Vec<f64> = (0..per).map(|_| quantized(&mut rng, 4, 4.0, 0.25)).collect();
            x.extend((0..per).map(|_| quantized(&mut rng, 4, 4.0, 0.25).abs()));
            x.extend(std::iter::repeat_n(0.0, per));
            // Relevance enters no denominator: continuous values (10 % zeros), so that sums of
            // shares do not cancel to exactly 0 by the chance of small fractions.
            let r: Vec<f64> = (0..3 * d.dense.n_out)
                .map(|_| if rng.unit() < 0.1 { 0.0 } else { (rng.normal() as f32) as f64 })
                .collect();
            for nonneg in [false, true] {
                let xs: Vec<f64> = if nonneg { x.iter().map(|v| v.abs()).collect() } else { x.clone() };
                let xt = Tensor::<4>::from_data(
                    TensorData::new(xs.iter().map(|&v| v as f32).collect::<Vec<_>>(), d.x_shape),
                    &device,
                );
                let y_shape = d.layer.forward_with(xt.clone(), &d.layer.weight(), None).dims();
                let rt = Tensor::<4>::from_data(
                    TensorData::new(r.iter().map(|&v| v as f32).collect::<Vec<_>>(), y_shape),
                    &device,
                );
                for (name, rule, variants) in rules() {
                    for output_layer in [false, true] {
                        if output_layer && !(name == "rap" && d.dense.is_linear) {
                            continue;
                        }
                        let ctx = RuleContext::new("layer", d.layer_type.clone())
                            .with_output_layer(output_layer)
                            .with_input_nonnegative(nonneg)
                            .with_sharing(&Sharing::SafeDivide);
                        let label =
                            format!("{name} on {} (input ≥ 0 known: {nonneg}, output layer: {output_layer})", d.what);
                        let got = match rule.relevance(d.layer.as_ref(), &xt, rt.clone(), &ctx) {
                            Ok(t) => to_vec(&t),
                            Err(e) => {
                                failures.push(format!("{label}: {e}"));
                                continue;
                            }
                        };
                        runs += 1;
                        let oracle_batch = |variant: usize| -> Vec<(Vec<f64>, f64)> {
                            (0..3)
                                .map(|b| {
                                    let xb = &xs[b * per..(b + 1) * per];
                                    let rb = &r[b * d.dense.n_out..(b + 1) * d.dense.n_out];
                                    let want = oracle(name, variant, &d.dense, xb, rb, output_layer);
                                    let scale = error_scale(name, &d.dense, xb, rb, output_layer, &want);
                                    (want, scale)
                                })
                                .collect()
                        };
                        match compare(&got, &oracle_batch(0)) {
                            Ok(w) => {
                                let e = worst.entry(name).or_insert(0.0);
                                *e = e.max(w);
                            }
                            Err(e) => failures.push(format!("{label}: {e}")),
                        }
                        for v in 1..=variants {
                            let told = compare(&got, &oracle_batch(v)).is_err();
                            *caught.entry((name, v)).or_insert(false) |= told;
                        }
                    }
                }
            }
        }
    }
    let mut names: Vec<_> = worst.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, w) in names {
        println!("{name}: worst |R − R_oracle| / max|R_oracle| = {w:.2e}");
    }
    println!("rule runs compared: {runs}");
    for f in failures.iter().take(20) {
        println!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} rule runs differ from their oracle", failures.len());
    let missed: Vec<_> = caught.iter().filter(|(_, c)| !**c).map(|(k, _)| *k).collect();
    assert!(missed.is_empty(), "wrong variants the comparison could not tell apart: {missed:?}");
    // Every rule with a variant was checked.
    for (name, _, variants) in rules() {
        for v in 1..=variants {
            assert!(caught.contains_key(&(name, v)), "{name}: variant {v} never run");
        }
    }
}
