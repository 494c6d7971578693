//! Which way of computing a large convolution is fastest on this backend: Burn's `conv2d`,
//! Winograd's F(2,3) on Burn's tensor operations (`common/winograd.rs`, with its error against
//! the direct convolution), unfold + matrix product, and for the adjoint Burn's `conv_transpose2d` against the forward
//! convolution with the flipped kernel, and the crate's own stride-1 kernel
//! (`rap_attrib::kernels`, shifted matrix products on flex; what the layers call) for both. The
//! shapes are the 3×3 convolutions of VGG-16 at 224² and of ResNet-50's bottlenecks, and the
//! stacked `[W⁺; |W⁻|]` kernels the rules run; then ResNet-50's strided convolutions, Burn's
//! `conv2d` against the crate's (unfolded products), with their errors against `f64`.
//!
//! ```sh
//! cargo bench --bench conv_paths                                   # CPU (flex)
//! RAP_BENCH_DEVICE=wgpu cargo bench --features wgpu --bench conv_paths
//! ```
//!
//! Prints, per layer, the median time of each path (of `RAP_BENCH_RUNS` calls after one warm-up,
//! default 5, each read back) and the rate in GFLOP/s (2·MACs); then, per layer, each path's
//! error against an `f64` oracle (the convolution and its adjoint summed in `f64` from the same
//! `f32` inputs): max |Δ| / max |y_f64|.

mod common;
#[path = "common/winograd.rs"]
mod winograd;

use common::{device, median};
use rap_attrib::burn::tensor::module::{conv_transpose2d, conv2d, unfold4d};
use rap_attrib::burn::tensor::ops::{ConvOptions, ConvTransposeOptions, UnfoldOptions};
use rap_attrib::burn::tensor::{Distribution, Tensor};

/// One warm-up call, then the median of `runs`.
fn timed(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(runs, f)
}

/// max |got − want| / max |want|.
fn rel_err(got: Tensor<4>, want: &[f64]) -> f64 {
    let got: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
    let top = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    got.iter().zip(want).fold(0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs())) / top
}

fn main() {
    let device = device();
    let full = std::env::args().any(|a| a == "--bench");
    let runs: usize =
        if full { std::env::var("RAP_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5) } else { 1 };
    // (input channels, output channels, size): VGG-16's 3×3 convolutions, one per stage (the
    // smoke run under `cargo test` takes the smallest only).
    let all = [
        (3, 64, 224),
        (64, 64, 224),
        (128, 128, 112),
        (256, 256, 56),
        (512, 512, 28),
        (512, 512, 14),
        (64, 64, 56),
        (128, 128, 28),
        (256, 256, 14),
        (512, 512, 7),
    ];
    let layers: &[(usize, usize, usize)] = if full { &all } else { &all[9..] };
    println!(
        "| layer (Cin→Cout, H) | out ch | conv2d | Winograd F(2,3) | max |Δ|/max|y| | unfold + matmul | conv_transpose2d | adjoint as conv | crate conv2d | crate conv_transpose2d | GFLOP/s (conv2d) | GFLOP/s (crate conv2d) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut errors = Vec::new();
    for &(cin, cout, h) in layers {
        for stack in [1, 2] {
            let co = cout * stack;
            let x = Tensor::<4>::random([1, cin, h, h], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<4>::random([co, cin, 3, 3], Distribution::Normal(0.0, 0.1), &device);
            let y = Tensor::<4>::random([1, co, h, h], Distribution::Normal(0.0, 1.0), &device);
            let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            let conv = timed(runs, || {
                let _ = conv2d(x.clone(), w.clone(), None, opts.clone()).into_data();
            });
            let u = winograd::transform_kernel(&w);
            let wino = timed(runs, || {
                let _ = winograd::conv3x3(x.clone(), &u, None, [1, 1]).into_data();
            });
            let direct: Vec<f32> =
                conv2d(x.clone(), w.clone(), None, opts.clone()).into_data().try_to_vec::<f32>().unwrap();
            let fast: Vec<f32> =
                winograd::conv3x3(x.clone(), &u, None, [1, 1]).into_data().try_to_vec::<f32>().unwrap();
            let top = direct.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = direct.iter().zip(&fast).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / top;
            let unfold = timed(runs, || {
                let cols = unfold4d(x.clone(), [3, 3], UnfoldOptions::new([1, 1], [1, 1], [1, 1]));
                let w2: Tensor<2> = w.clone().reshape([co, cin * 9]);
                let out = w2.unsqueeze::<3>().matmul(cols).reshape([1, co, h, h]);
                let _ = out.into_data();
            });
            let topts = ConvTransposeOptions::new([1, 1], [1, 1], [0, 0], [1, 1], 1);
            let transposed = timed(runs, || {
                let _ = conv_transpose2d(y.clone(), w.clone(), None, topts.clone()).into_data();
            });
            // The adjoint as a forward convolution: the kernel transposed and flipped, padding
            // dilation·(k−1) − padding = 1 (what the crate routes non-flex backends through).
            let flipped = w.clone().swap_dims(0, 1).flip([2, 3]);
            let routed = timed(runs, || {
                let _ = conv2d(y.clone(), flipped.clone(), None, opts.clone()).into_data();
            });
            let ours = timed(runs, || {
                let _ = rap_attrib::kernels::conv2d(x.clone(), w.clone(), None, opts.clone()).into_data();
            });
            let ours_adjoint = timed(runs, || {
                let _ = rap_attrib::kernels::conv_transpose2d(y.clone(), w.clone(), topts.clone()).into_data();
            });
            let gflop = 2.0 * (cin * co * 9 * h * h) as f64 / 1e9;
            let ms = |t: f64| format!("{:.1} ms", t * 1e3);
            println!(
                "| {cin}→{cout}{} , {h}² | {co} | {} | {} | {err:.1e} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
                if stack == 2 { " ×2 stacked" } else { "" },
                ms(conv),
                ms(wino),
                ms(unfold),
                ms(transposed),
                ms(routed),
                ms(ours),
                ms(ours_adjoint),
                gflop / conv,
                gflop / ours
            );
            if stack == 1 {
                let host = |t: &Tensor<4>| t.to_data().try_to_vec::<f32>().unwrap();
                let (xv, wv, yv) = (host(&x), host(&w), host(&y));
                let want = oracle(&xv, &wv, [cin, cout, 3, 1, h], 1);
                let want_t = oracle_adjoint(&yv, &wv, [cin, cout, 3, 1, h], 1);
                errors.push(format!(
                    "| {cin}→{cout}, {h}² | {:.1e} | {:.1e} | {:.1e} | {:.1e} | {:.1e} |",
                    rel_err(conv2d(x.clone(), w.clone(), None, opts.clone()), &want),
                    rel_err(winograd::conv3x3(x.clone(), &u, None, [1, 1]), &want),
                    rel_err(rap_attrib::kernels::conv2d(x.clone(), w.clone(), None, opts.clone()), &want),
                    rel_err(conv_transpose2d(y.clone(), w.clone(), None, topts.clone()), &want_t),
                    rel_err(rap_attrib::kernels::conv_transpose2d(y.clone(), w.clone(), topts.clone()), &want_t),
                ));
            }
        }
    }
    println!();
    println!(
        "| layer (Cin→Cout, H) | conv2d vs f64 | Winograd F(2,3) vs f64 | crate conv2d vs f64 | conv_transpose2d vs f64 | crate conv_transpose2d vs f64 |"
    );
    println!("|---|---|---|---|---|---|");
    for row in errors {
        println!("{row}");
    }
    strided(full, runs, &device);
}

/// The `f64` oracle of every table here: a `k×k` convolution with `stride` and symmetric `pad`
/// of `x` `[cin, h, h]` with `w` `[cout, cin, k, k]` (batch 1, no bias): `[cout, ho, ho]`.
fn oracle(x: &[f32], w: &[f32], [cin, cout, k, stride, h]: [usize; 5], pad: usize) -> Vec<f64> {
    let ho = (h + 2 * pad - k) / stride + 1;
    let mut out = vec![0f64; cout * ho * ho];
    for o in 0..cout {
        let dst = &mut out[o * ho * ho..][..ho * ho];
        for i in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    let wv = f64::from(w[((o * cin + i) * k + ky) * k + kx]);
                    for oy in 0..ho {
                        let Some(iy) = (oy * stride + ky).checked_sub(pad).filter(|&iy| iy < h) else { continue };
                        let row = &x[(i * h + iy) * h..][..h];
                        for (ox, d) in dst[oy * ho..][..ho].iter_mut().enumerate() {
                            if let Some(&v) = (ox * stride + kx).checked_sub(pad).and_then(|ix| row.get(ix)) {
                                *d += wv * f64::from(v);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The transpose of [`oracle`]: `y` `[cout, ho, ho]` onto `[cin, h, h]`.
fn oracle_adjoint(y: &[f32], w: &[f32], [cin, cout, k, stride, h]: [usize; 5], pad: usize) -> Vec<f64> {
    let ho = (h + 2 * pad - k) / stride + 1;
    let mut out = vec![0f64; cin * h * h];
    for o in 0..cout {
        let src = &y[o * ho * ho..][..ho * ho];
        for i in 0..cin {
            let dst = &mut out[i * h * h..][..h * h];
            for ky in 0..k {
                for kx in 0..k {
                    let wv = f64::from(w[((o * cin + i) * k + ky) * k + kx]);
                    for oy in 0..ho {
                        let Some(iy) = (oy * stride + ky).checked_sub(pad).filter(|&iy| iy < h) else { continue };
                        for (ox, &v) in src[oy * ho..][..ho].iter().enumerate() {
                            if let Some(ix) = (ox * stride + kx).checked_sub(pad).filter(|&ix| ix < h) {
                                dst[iy * h + ix] += wv * f64::from(v);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// ResNet-50's strided convolutions (its stem, the first 3×3 of each later stage and the 1×1
/// downsampling shortcuts), batch 1: Burn's `conv2d` and `conv_transpose2d` against the crate's
/// (unfolded products, and products into the unfolded space with a scatter-add), in time and
/// against the `f64` oracle.
fn strided(full: bool, runs: usize, device: &rap_attrib::burn::tensor::Device) {
    let all = [
        [3, 64, 7, 2, 224],
        [128, 128, 3, 2, 56],
        [256, 512, 1, 2, 56],
        [256, 256, 3, 2, 28],
        [512, 1024, 1, 2, 28],
        [512, 512, 3, 2, 14],
        [1024, 2048, 1, 2, 14],
    ];
    let smoke = [[32, 64, 3, 2, 28]];
    let layers: &[[usize; 5]] = if full { &all } else { &smoke };
    println!();
    println!(
        "| strided layer (Cin→Cout, k, stride, H) | conv2d | crate conv2d | GFLOP/s (conv2d) | GFLOP/s (crate) | conv2d vs f64 | crate conv2d vs f64 | conv_transpose2d | crate conv_transpose2d | conv_transpose2d vs f64 | crate conv_transpose2d vs f64 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &shape in layers {
        let [cin, cout, k, stride, h] = shape;
        let pad = k / 2;
        let x = Tensor::<4>::random([1, cin, h, h], Distribution::Normal(0.0, 1.0), device);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.1), device);
        let opts = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
        let conv = timed(runs, || {
            let _ = conv2d(x.clone(), w.clone(), None, opts.clone()).into_data();
        });
        let ours = timed(runs, || {
            let _ = rap_attrib::kernels::conv2d(x.clone(), w.clone(), None, opts.clone()).into_data();
        });
        let ho = (h + 2 * pad - k) / stride + 1;
        let gflop = 2.0 * (cin * cout * k * k * ho * ho) as f64 / 1e9;
        let y = Tensor::<4>::random([1, cout, ho, ho], Distribution::Normal(0.0, 1.0), device);
        let out_pad = h + 2 * pad - k - (ho - 1) * stride;
        let topts = ConvTransposeOptions::new([stride, stride], [pad, pad], [out_pad, out_pad], [1, 1], 1);
        let transposed = timed(runs, || {
            let _ = conv_transpose2d(y.clone(), w.clone(), None, topts.clone()).into_data();
        });
        let ours_t = timed(runs, || {
            let _ = rap_attrib::kernels::conv_transpose2d(y.clone(), w.clone(), topts.clone()).into_data();
        });
        let host = |t: &Tensor<4>| t.to_data().try_to_vec::<f32>().unwrap();
        let want = oracle(&host(&x), &host(&w), shape, pad);
        let want_t = oracle_adjoint(&host(&y), &host(&w), shape, pad);
        println!(
            "| {cin}→{cout}, {k}×{k}, s{stride}, {h}² | {:.2} ms | {:.2} ms | {:.0} | {:.0} | {:.1e} | {:.1e} | {:.2} ms | {:.2} ms | {:.1e} | {:.1e} |",
            conv * 1e3,
            ours * 1e3,
            gflop / conv,
            gflop / ours,
            rel_err(conv2d(x.clone(), w.clone(), None, opts.clone()), &want),
            rel_err(rap_attrib::kernels::conv2d(x.clone(), w.clone(), None, opts.clone()), &want),
            transposed * 1e3,
            ours_t * 1e3,
            rel_err(conv_transpose2d(y.clone(), w.clone(), None, topts.clone()), &want_t),
            rel_err(rap_attrib::kernels::conv_transpose2d(y.clone(), w.clone(), topts.clone()), &want_t),
        );
    }
}
