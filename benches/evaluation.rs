//! The cost of evaluating explanations, as ratios to one forward pass, in one run, on one
//! backend: each metric on its own, region perturbation, and a full evaluation of one image
//! (eight methods, every metric, 40 MoRF + 40 LeRF steps).
//!
//! ```sh
//! cargo bench --bench evaluation                              # CPU (flex)
//! RAP_BENCH_DEVICE=wgpu cargo bench --features wgpu --bench evaluation
//! ```
//!
//! The bundled SqueezeNet 1.1 on the bundled Pascal VOC photo at 224². Under
//! `cargo test --all-targets` (no `--bench` argument) it runs once as a smoke test with 2
//! perturbation steps and 4 integrated-gradients steps.

mod common;

use common::{device, median};
use criterion::{BenchmarkId, Criterion};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::evaluation::{Dataset, EvaluationConfig, evaluate};
use rap_attrib::gradients::{GradientExplainer, GradientMethod, IntegratedGradients};
use rap_attrib::imaging::load_imagenet;
use rap_attrib::metrics::{
    Order, PerturbationConfig, RatioMode, Threshold, outside_inside_ratio, perturbation_curves, pointing_game,
    segmentation,
};
use rap_attrib::zoo::{Architecture, ZooModel};
use rap_attrib::{AttributionMethod, Explainer, Target};
use std::time::Duration;

fn main() {
    let device = device();
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 3 } else { 1 };
    let steps = if full { 40 } else { 2 };
    let ig_steps = if full { 50 } else { 4 };
    let weights = common::bundled_squeezenet();
    let model = ZooModel::load(Architecture::SqueezeNet1_1, weights, &device).expect("bundled SqueezeNet");
    let data = Dataset::load(common::assets().join("images/voc")).expect("bundled VOC photo");
    let sample = &data.samples[0];
    let (_, x) = load_imagenet(&sample.image, 224, &device).expect("photo");
    let boxes = [sample.box_region().unwrap().resize(224, 224).unwrap()];
    let mask = [sample.mask_region().unwrap().resize(224, 224).unwrap()];

    let rap = Explainer::new(&model, model.composite("rap").unwrap());
    let a1b0 = Explainer::new(&model, model.composite("lrp-a1b0").unwrap());
    let a2b1 = Explainer::new(&model, model.composite("lrp-a2b1").unwrap());
    let eps = Explainer::new(&model, model.composite("lrp-eps").unwrap());
    let grad = GradientExplainer::new(&model, GradientMethod::Gradient);
    let ixg = GradientExplainer::new(&model, GradientMethod::InputTimesGradient);
    let ig = GradientExplainer::new(
        &model,
        GradientMethod::IntegratedGradients(IntegratedGradients::default().with_steps(ig_steps)),
    )
    .with_chunk(8);
    let gbp = GradientExplainer::new(&model, GradientMethod::GuidedBackprop);
    let methods: Vec<(&str, &dyn AttributionMethod)> = vec![
        ("RAP", &rap),
        ("LRP-a1b0", &a1b0),
        ("LRP-a2b1", &a2b1),
        ("LRP-eps", &eps),
        ("Gradient", &grad),
        ("Input*Grad", &ixg),
        ("IntGrad", &ig),
        ("GuidedBP", &gbp),
    ];
    let r = rap.explain(x.clone(), Target::Predicted).unwrap();
    let target = r.targets[0];
    let rel = r.relevance;
    let batch: usize = std::env::var("RAP_BENCH_PERTURB_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let perturb = PerturbationConfig::default().with_steps(steps).with_batch(batch);
    let k = methods.len();
    let inputs = x.clone().repeat_dim(0, k);
    let rels = Tensor::cat(vec![rel.clone(); k], 0);
    let both = [Order::MostRelevantFirst, Order::LeastRelevantFirst];

    let forward = || {
        let _ = rap.forward(x.clone()).unwrap().into_data();
    };
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("metrics/squeezenet1_1");
    group.bench_function(BenchmarkId::from_parameter("forward"), |b| b.iter(forward));
    group.bench_function(BenchmarkId::from_parameter("ratio_all"), |b| {
        b.iter(|| outside_inside_ratio(&rel, &boxes, RatioMode::All).unwrap())
    });
    group.bench_function(BenchmarkId::from_parameter("segmentation"), |b| {
        b.iter(|| segmentation(&rel, &mask, Threshold::Auto).unwrap())
    });
    group.bench_function(BenchmarkId::from_parameter("pointing"), |b| {
        b.iter(|| pointing_game(&rel, &mask, 15.0).unwrap())
    });
    group.finish();
    c.final_summary();

    // The ratio table: medians of our own runs.
    let t_forward = median(runs.max(3), forward);
    let t_ratio = median(runs.max(3), || {
        outside_inside_ratio(&rel, &boxes, RatioMode::All).unwrap();
    });
    let t_seg = median(runs.max(3), || {
        segmentation(&rel, &mask, Threshold::Auto).unwrap();
    });
    let t_point = median(runs.max(3), || {
        pointing_game(&rel, &mask, 15.0).unwrap();
    });
    let t_perturb = median(runs, || {
        perturbation_curves(&model, &inputs, &rels, &vec![target; k], &both, &perturb, &mut |_, _| {}).unwrap();
    });
    let t_attrib: Vec<(&str, f64)> = methods
        .iter()
        .map(|(n, m)| {
            (
                *n,
                median(runs, || {
                    let _ = m.attribute(x.clone(), Target::Classes(vec![target])).unwrap().relevance.into_data();
                }),
            )
        })
        .collect();
    let config = EvaluationConfig::default().with_perturbation(perturb);
    let t_eval = median(runs, || {
        evaluate(&model, &methods, &data, &config, &device, &mut |_| {}).unwrap();
    });
    println!(
        "\nSqueezeNet 1.1, one 224² image, {k} methods, {steps} steps per order; times / one forward ({t_forward:.4}s):"
    );
    println!("{:<40} {:>10} {:>10}", "job", "seconds", "× forward");
    let line = |name: &str, t: f64| println!("{name:<40} {t:>10.4} {:>10.1}", t / t_forward);
    line("outside-inside ratio (1 map)", t_ratio);
    line("segmentation (1 map)", t_seg);
    line("pointing game (1 map)", t_point);
    for (n, t) in &t_attrib {
        line(&format!("attribution: {n}"), *t);
    }
    line(&format!("perturbation ({k} maps × MoRF+LeRF)"), t_perturb);
    line("full evaluation of one image", t_eval);
    let forwards = (steps + 1) * (2 * k).div_ceil(batch);
    println!(
        "(perturbation runs {forwards} batched forward passes of up to {batch} copies: {} perturbed images)",
        (steps + 1) * 2 * k
    );
}
