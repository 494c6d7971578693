//! Explaining full-size transformers and modern CNNs from their ONNX exports: our forward and
//! `cp-epsilon` next to LXT 2.1 (`scripts/lxt_bench.py`, run right after in the same session).
//!
//! ```sh
//! python scripts/torchvision_zoo.py /tmp/zoo vit_b_16 convnext_tiny
//! RAP_BENCH_ONNX_DIR=/tmp/zoo cargo bench --features onnx --bench modern
//! python scripts/lxt_bench.py /tmp/zoo
//! ```
//!
//! For each of `RAP_BENCH_ONNX_MODELS` (default `vit_b_16,convnext_tiny`) in
//! `RAP_BENCH_ONNX_DIR` and each batch of `RAP_BENCH_BATCHES` (default 1,2): the first call and
//! the median of `RAP_BENCH_RUNS` further calls (default 5) of the forward pass and of
//! `Explainer::explain` with `cp-epsilon` (the same rules as LXT's CP-LRP with Zennit's ε on
//! the weight layers), on 224² inputs of seeded random values. Without `RAP_BENCH_ONNX_DIR` (as
//! under `cargo test`) it says so and stops.

mod common;

use common::{device, list, median};
use rap_attrib::burn::tensor::{Distribution, Tensor};
use rap_attrib::onnx::OnnxModel;
use rap_attrib::{Composite, Explainer, Target};

fn main() {
    let Some(dir) = std::env::var_os("RAP_BENCH_ONNX_DIR").map(std::path::PathBuf::from) else {
        println!("RAP_BENCH_ONNX_DIR is not set: write the exports with scripts/torchvision_zoo.py first");
        return;
    };
    let dev = device();
    let runs: usize = std::env::var("RAP_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    println!("| model | batch | forward (first / steady) | cp-epsilon explain (first / steady) | explain / forward |");
    println!("|---|---|---|---|---|");
    for name in list::<String>("RAP_BENCH_ONNX_MODELS", "vit_b_16,convnext_tiny") {
        let model =
            OnnxModel::from_file(dir.join(format!("{name}.onnx")), &dev).unwrap_or_else(|e| panic!("{name}: {e}"));
        let explainer = Explainer::new(&model, Composite::cp_epsilon());
        for b in list::<String>("RAP_BENCH_BATCHES", "1,2").iter().filter_map(|b| b.parse::<usize>().ok()) {
            let x: Tensor<4> = Tensor::random([b, 3, 224, 224], Distribution::Normal(0.0, 1.0), &dev);
            let forward = || {
                let y = explainer.forward(x.clone()).unwrap();
                let _ = y.into_data();
            };
            let explain = || {
                let e = explainer.explain(x.clone(), Target::Predicted).unwrap();
                let _ = e.relevance.into_data();
            };
            let t = std::time::Instant::now();
            forward();
            let f_first = t.elapsed().as_secs_f64();
            let f = median(runs, forward);
            let t = std::time::Instant::now();
            explain();
            let e_first = t.elapsed().as_secs_f64();
            let e = median(runs, explain);
            println!("| {name} | {b} | {f_first:.3} s / {f:.3} s | {e_first:.3} s / {e:.3} s | {:.2} |", e / f);
        }
    }
}
