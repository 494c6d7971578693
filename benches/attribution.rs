//! Attribution speed as ratios to the forward pass, in one run, on one backend.
//!
//! ```sh
//! cargo bench --bench attribution                              # CPU (flex)
//! RAP_BENCH_DEVICE=wgpu cargo bench --features wgpu --bench attribution
//! RAP_BENCH_MODELS=squeezenet1_1 RAP_BENCH_BATCHES=1,8 cargo bench --bench attribution
//! ```
//!
//! Models: the bundled SqueezeNet 1.1 and VGG-16 / ResNet-50 with random weights, at 224²;
//! batches from `RAP_BENCH_BATCHES` (default 1,8). For each model and batch it times the
//! forward pass, RAP, LRP-α1β0, LRP-α2β1 and LRP-ε (criterion), then prints every time as a
//! ratio to the forward time of the same model, batch and backend, the images per second, and
//! the peak host memory of one RAP explanation (a counting allocator; device memory is not
//! counted on a GPU).

use criterion::{BenchmarkId, Criterion};
use rap_attrib::burn::tensor::{Device, Distribution, Tensor};
use rap_attrib::zoo::{Architecture, ZooConfig, ZooModel, bundled_weights};
use rap_attrib::{Composite, Explainer, Target};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The device of `RAP_BENCH_DEVICE` (`wgpu` with the `wgpu` feature), flex otherwise.
fn device() -> Device {
    rap_attrib::device_by_name(&std::env::var("RAP_BENCH_DEVICE").unwrap_or_default())
        .unwrap_or_else(|_| Device::flex())
}

fn model(arch: Architecture, device: &Device) -> ZooModel {
    match arch {
        Architecture::SqueezeNet1_1 => {
            ZooModel::load(arch, bundled_weights(arch).expect("bundled"), device).expect("bundled SqueezeNet")
        }
        other => ZooModel::random(other, ZooConfig::default(), 1, device).expect("random weights"),
    }
}

fn rules(m: &ZooModel) -> Vec<(&'static str, Option<Composite>)> {
    vec![
        ("forward", None),
        ("rap", Some(m.composite("rap").unwrap())),
        ("lrp_a1b0", Some(m.composite("lrp-a1b0").unwrap())),
        ("lrp_a2b1", Some(m.composite("lrp-a2b1").unwrap())),
        ("lrp_eps", Some(m.composite("lrp-eps").unwrap())),
    ]
}

/// Runs one job to completion (reads the result back, so GPU work is finished).
fn job(m: &ZooModel, composite: &Option<Composite>, x: &Tensor<4>) {
    match composite {
        None => {
            let logits = Explainer::new(m, Composite::rap()).forward(x.clone()).unwrap();
            let _ = logits.into_data();
        }
        Some(c) => {
            let e = Explainer::new(m, c.clone()).explain(x.clone(), Target::Predicted).unwrap();
            let _ = e.relevance.into_data();
        }
    }
}

fn main() {
    let device = device();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // as a smoke test: one small model, batch 1, one timed run per job.
    let full = std::env::args().any(|a| a == "--bench");
    let default_models = if full { "squeezenet1_1,resnet50,vgg16" } else { "squeezenet1_1" };
    let default_batches = if full { "1,8" } else { "1" };
    let runs = if full { 5 } else { 1 };
    let models: Vec<Architecture> = std::env::var("RAP_BENCH_MODELS")
        .unwrap_or_else(|_| default_models.into())
        .split(',')
        .map(|s| s.trim().parse().expect("model name"))
        .collect();
    let batches: Vec<usize> = std::env::var("RAP_BENCH_BATCHES")
        .unwrap_or_else(|_| default_batches.into())
        .split(',')
        .map(|s| s.trim().parse().expect("batch size"))
        .collect();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut table = Vec::new();
    for arch in models {
        let m = model(arch, &device);
        for &b in &batches {
            let x = Tensor::<4>::random([b, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
            let mut group = c.benchmark_group(format!("{}/b{b}", arch.name()));
            let mut medians = Vec::new();
            for (name, composite) in rules(&m) {
                job(&m, &composite, &x);
                group.bench_function(BenchmarkId::from_parameter(name), |bencher| {
                    bencher.iter(|| job(&m, &composite, &x));
                });
                // Our own median of 5 runs for the ratio table (criterion's report has the rest).
                let mut times: Vec<f64> = (0..runs)
                    .map(|_| {
                        let t = Instant::now();
                        job(&m, &composite, &x);
                        t.elapsed().as_secs_f64()
                    })
                    .collect();
                times.sort_by(f64::total_cmp);
                medians.push((name, times[runs / 2]));
            }
            group.finish();
            let before = CURRENT.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            job(&m, &rules(&m)[1].1, &x);
            let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
            table.push((arch.name(), b, medians, peak));
        }
    }
    c.final_summary();
    println!(
        "\n{:<14} {:>3} {:>10} {:>12} {:>12} {:>12} {:>12} {:>9} {:>10}",
        "model", "B", "forward", "RAP", "α1β0", "α2β1", "ε", "RAP img/s", "RAP peak"
    );
    for (name, b, med, peak) in &table {
        let fwd = med[0].1;
        let cell = |i: usize| format!("{:.3}s {:>4.1}×", med[i].1, med[i].1 / fwd);
        println!(
            "{:<14} {:>3} {:>9.3}s {:>12} {:>12} {:>12} {:>12} {:>9.2} {:>8.0}MB",
            name,
            b,
            fwd,
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            *b as f64 / med[1].1,
            *peak as f64 / 1e6
        );
    }
}
