//! Attribution speed in seconds and as ratios to our own forward pass, in one run, on one
//! backend, ready to be read next to `../shared/bench/peers.py` (PyTorch, Zennit, Captum) run
//! right after on the same machine.
//!
//! ```sh
//! cargo bench --bench attribution                              # CPU (flex)
//! RAP_BENCH_DEVICE=wgpu cargo bench --features wgpu --bench attribution
//! RAP_BENCH_MODELS=vgg16,resnet50 RAP_BENCH_BATCHES=1 RAP_BENCH_RUNS=5 cargo bench --bench attribution
//! ```
//!
//! Models: the bundled SqueezeNet 1.1 and VGG-16 / ResNet-50 with random weights (seed 1), at
//! 224² with a seeded random input; batches from `RAP_BENCH_BATCHES` (default 1,8). Jobs: the
//! forward pass, RAP, LRP-α1β0, LRP-α2β1, LRP-ε, Zennit's EpsilonPlusFlat and EpsilonAlpha2Beta1 (the presets that reproduce them) and the plain
//! gradient. Each job is one explainer built once and called repeatedly, as an application
//! would: the first call (which prepares the kept weights and, on a GPU, tunes kernels) is
//! reported on its own, the steady state as the median of `RAP_BENCH_RUNS` further calls
//! (default 5; `RAP_BENCH_JOBS` picks jobs by name, `RAP_BENCH_CACHE=0` turns the explainers'
//! weight cache off), each read back to the host so GPU work is complete. Criterion's statistics
//! come first unless `RAP_BENCH_CRITERION=0`. A table gives, per job, the peak host memory of
//! one call after the first and what the explainer keeps between calls (a counting allocator;
//! device memory is not counted on a GPU); `scripts/memory.sh` measures whole processes, one job
//! each, next to the Python peers.

mod common;

use common::{device, list, median};
use criterion::{BenchmarkId, Criterion};
use rap_attrib::burn::tensor::{Device, Distribution, Tensor};
use rap_attrib::gradients::{GradientExplainer, GradientMethod};
use rap_attrib::zoo::{Architecture, ZooConfig, ZooModel};
use rap_attrib::{AttributionMethod, Explainer, Target};
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

fn model(arch: Architecture, device: &Device) -> ZooModel {
    match arch {
        Architecture::SqueezeNet1_1 => {
            ZooModel::load(arch, common::bundled_squeezenet(), device).expect("bundled SqueezeNet")
        }
        other => ZooModel::random(other, ZooConfig::default(), 1, device).expect("random weights"),
    }
}

/// The jobs: a name, the zoo composite (or the gradient, or `None` for the forward pass).
const JOBS: [(&str, &str); 8] = [
    ("forward", ""),
    ("RAP", "rap"),
    ("LRP-α1β0", "lrp-a1b0"),
    ("LRP-α2β1", "lrp-a2b1"),
    ("LRP-ε", "lrp-eps"),
    ("Zennit-ε+Flat", "epsilon-plus-flat"),
    ("Zennit-ε-α2β1", "epsilon-alpha2-beta1"),
    ("gradient", "gradient"),
];

/// One job, built once: an explainer kept across calls, as an application keeps it.
enum Job<'m> {
    Forward(Box<Explainer<&'m ZooModel>>),
    Method(Box<dyn AttributionMethod + 'm>),
}

impl<'m> Job<'m> {
    fn new(m: &'m ZooModel, composite: &str) -> Self {
        match composite {
            "" => Job::Forward(Box::new(Explainer::new(m, m.composite("rap").expect("preset")))),
            "gradient" => Job::Method(Box::new(GradientExplainer::new(m, GradientMethod::Gradient))),
            name => {
                // `RAP_BENCH_CACHE=0`: prepare the weights on every call (the effect of the cache).
                let keep = std::env::var("RAP_BENCH_CACHE").map(|v| v != "0").unwrap_or(true);
                let e = Explainer::new(m, m.composite(name).expect("preset")).with_weight_cache(keep);
                Job::Method(Box::new(e))
            }
        }
    }

    /// Runs once to completion (reads the result back, so GPU work is finished).
    fn run(&self, x: &Tensor<4>) {
        match self {
            Job::Forward(e) => {
                let _ = e.forward(x.clone()).expect("forward").into_data();
            }
            Job::Method(m) => {
                let _ = m.attribute(x.clone(), Target::Predicted).expect("explain").relevance.into_data();
            }
        }
    }
}

fn seconds(t: f64) -> String {
    if t < 1.0 { format!("{:.1} ms", t * 1e3) } else { format!("{t:.2} s") }
}

fn main() {
    let device = device();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // as a smoke test: one small model, batch 1, one timed run per job.
    let full = std::env::args().any(|a| a == "--bench");
    let models: Vec<Architecture> =
        list("RAP_BENCH_MODELS", if full { "squeezenet1_1,resnet50,vgg16" } else { "squeezenet1_1" });
    let batches: Vec<usize> = list("RAP_BENCH_BATCHES", if full { "1,8" } else { "1" });
    let runs: usize = if full { list("RAP_BENCH_RUNS", "5")[0] } else { 1 };
    // `RAP_BENCH_JOBS=RAP,Zennit-ε+Flat` runs only these (and the forward pass the ratios need).
    let jobs: Vec<String> = std::env::var("RAP_BENCH_JOBS").map(|v| list("RAP_BENCH_JOBS", &v)).unwrap_or_default();
    let use_criterion = full && std::env::var("RAP_BENCH_CRITERION").map(|v| v != "0").unwrap_or(true);
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut rows = Vec::new();
    for arch in models {
        let m = model(arch, &device);
        for &b in &batches {
            Device::seed(&device, 7);
            let x = Tensor::<4>::random([b, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
            let mut group = c.benchmark_group(format!("{}/b{b}", arch.name()));
            let mut cells = Vec::new();
            for (name, composite) in JOBS {
                if !jobs.is_empty() && !jobs.iter().any(|j| j == name) && name != "forward" {
                    continue;
                }
                // Memory (the counting allocator): what the explainer keeps after its first call
                // (the weight cache), and the peak of a later call above what was live before it.
                let start = CURRENT.load(Ordering::Relaxed);
                let job = Job::new(&m, composite);
                let t = Instant::now();
                job.run(&x);
                let first = t.elapsed().as_secs_f64();
                let before = CURRENT.load(Ordering::Relaxed);
                let kept = before.saturating_sub(start);
                PEAK.store(before, Ordering::Relaxed);
                job.run(&x);
                let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
                if use_criterion {
                    group.bench_function(BenchmarkId::from_parameter(name), |bencher| bencher.iter(|| job.run(&x)));
                }
                cells.push((name, first, median(runs, || job.run(&x)), peak, kept));
            }
            group.finish();
            rows.push((arch.name(), b, cells));
        }
    }
    if use_criterion {
        c.final_summary();
    }
    let header: Vec<&str> = rows.first().map(|r| r.2.iter().map(|c| c.0).collect()).unwrap_or_default();
    let mb = |v: usize| v as f64 / 1e6;
    println!("\nSteady state (median of {runs} calls after the first), and the ratio to our forward pass:\n");
    println!("| model | B | {} |", header.join(" | "));
    println!("|---|---|{}", "---|".repeat(header.len()));
    for (name, b, cells) in &rows {
        let fwd = cells[0].2;
        let row: Vec<String> =
            cells.iter().map(|(_, _, t, _, _)| format!("{} ({:.1}×)", seconds(*t), t / fwd)).collect();
        println!("| {name} | {b} | {} |", row.join(" | "));
    }
    println!("\nFirst call of each explainer (weights prepared; on a GPU, kernels tuned):\n");
    println!("| model | B | {} |", header.join(" | "));
    println!("|---|---|{}", "---|".repeat(header.len()));
    for (name, b, cells) in &rows {
        let row: Vec<String> = cells.iter().map(|(_, first, _, _, _)| seconds(*first)).collect();
        println!("| {name} | {b} | {} |", row.join(" | "));
    }
    println!(
        "\nHost memory (a counting allocator; device memory is not counted on a GPU): the peak of one call above what was live before it / what the explainer keeps between calls:\n"
    );
    println!("| model | B | {} |", header.join(" | "));
    println!("|---|---|{}", "---|".repeat(header.len()));
    for (name, b, cells) in &rows {
        let row: Vec<String> =
            cells.iter().map(|(_, _, _, peak, kept)| format!("{:.0} / {:.0} MB", mb(*peak), mb(*kept))).collect();
        println!("| {name} | {b} | {} |", row.join(" | "));
    }
    println!("\n| model | B | RAP img/s |");
    println!("|---|---|---|");
    for (name, b, cells) in &rows {
        let rate =
            cells.iter().find(|c| c.0 == "RAP").map_or("not timed".to_string(), |c| format!("{:.2}", *b as f64 / c.2));
        println!("| {name} | {b} | {rate} |");
    }
}
