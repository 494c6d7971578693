//! Which way of computing a large convolution is fastest on this backend: Burn's `conv2d`,
//! Winograd's F(2,3) on Burn's tensor operations (`common/winograd.rs`, with its error against
//! the direct convolution), unfold + matrix product, and for the adjoint Burn's `conv_transpose2d` against the forward
//! convolution with the flipped kernel, and the crate's own stride-1 kernel
//! (`rap_attrib::kernels`, shifted matrix products on flex; what the layers call) for both. The
//! shapes are the 3×3 convolutions of VGG-16 at 224² and of ResNet-50's bottlenecks, and the
//! stacked `[W⁺; |W⁻|]` kernels the rules run.
//!
//! ```sh
//! cargo bench --bench conv_paths                                   # CPU (flex)
//! RAP_BENCH_DEVICE=wgpu cargo bench --features wgpu --bench conv_paths
//! ```
//!
//! Prints, per layer, the median time of each path (of `RAP_BENCH_RUNS` calls after one warm-up,
//! default 5, each read back) and the rate in GFLOP/s (2·MACs).

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
        }
    }
}
