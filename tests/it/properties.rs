//! Property tests on random networks drawn from every supported structure (chains of
//! convolutions with random stride, padding, dilation and groups; max and average pooling with
//! padding and ceil mode; BatchNorm; Bottleneck and BasicBlock residual blocks with and without
//! downsampling; Fire concatenation; dense and convolutional heads; MLPs).
//!
//! The case count is `PROPTEST_CASES` (default 256); the seed is fixed in CI by proptest's
//! default deterministic runner configuration below.

use crate::common;

use common::{
    NetOptions, RandomNet, Rng, device, random_image_net, random_input, random_mlp, seeded, tensor2, tensor4,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::kit::{neg, pos, sample_max, sample_min, sample_sums, to_vec};
use rap_attrib::layers::LayerType;
use rap_attrib::rules::{AlphaBeta, Bounds, Epsilon, Flat, Gamma, Lrp0, Pass, Rap, Rule, ZBeta, ZPlus};
use rap_attrib::spec::SpecNetwork;
use rap_attrib::{Composite, Explainer, InitialRelevance, LinearLayer, Selector, Target};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Relative tolerance of every conservation check: `|got − expected| ≤ TOL · scale`, where the
/// scale is the larger of `|expected|` and the per-sample `Σ|R|` at the layer's output (float32
/// sums of signed terms cannot be judged more finely than their absolute mass).
const TOL: f64 = 1e-4;

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static SKIPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

fn runner() -> TestRunner {
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

fn input_for(net: &RandomNet, rng: &mut Rng, batch: usize, unit: bool, device: &Device) -> Input {
    let v = random_input(rng, &net.input_shape, batch, unit);
    if net.input_shape.len() == 4 {
        let s = &net.input_shape;
        Input::Image(tensor4(v, [batch, s[1], s[2], s[3]], device))
    } else {
        Input::Vector(tensor2(v, [batch, net.input_shape[1]], device))
    }
}

#[derive(Clone)]
enum Input {
    Image(Tensor<4>),
    Vector(Tensor<2>),
}

impl Input {
    fn map(&self, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Input {
        match self {
            Input::Image(t) => Input::Image(f(t.clone())),
            Input::Vector(t) => {
                let [b, n] = t.dims();
                Input::Vector(f(t.clone().reshape([b, n, 1, 1])).reshape([b, n]))
            }
        }
    }
    fn batch(&self) -> usize {
        match self {
            Input::Image(t) => t.dims()[0],
            Input::Vector(t) => t.dims()[0],
        }
    }
    fn sample(&self, i: usize) -> Input {
        match self {
            Input::Image(t) => {
                let [_, c, h, w] = t.dims();
                Input::Image(t.clone().slice([i..i + 1, 0..c, 0..h, 0..w]))
            }
            Input::Vector(t) => {
                let [_, n] = t.dims();
                Input::Vector(t.clone().slice([i..i + 1, 0..n]))
            }
        }
    }
}

/// Explains and returns (input relevance values, explanation pieces as rank-4).
fn explain(net: &SpecNetwork, composite: Composite, x: &Input, record: bool) -> rap_attrib::Result<Explained> {
    let e = Explainer::new(net, composite).record_layers(record);
    Ok(match x {
        Input::Image(t) => {
            let r = e.explain(t.clone(), Target::Predicted)?;
            Explained { rel: to_vec(&r.relevance), conservation: r.conservation(), layers: r.layers }
        }
        Input::Vector(t) => {
            let r = e.explain(t.clone(), Target::Predicted)?;
            Explained { rel: to_vec(&r.relevance), conservation: r.conservation(), layers: r.layers }
        }
    })
}

struct Explained {
    rel: Vec<f32>,
    conservation: rap_attrib::Conservation,
    layers: Vec<rap_attrib::LayerRelevance>,
}

fn close(got: &[f32], want: &[f32], scale: &[f32], what: &str) -> Result<(), TestCaseError> {
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let tol = TOL * (w.abs().max(*s) as f64).max(1e-30);
        prop_assert!(((g - w).abs() as f64) <= tol, "{what}: sample {i}: got {g}, expected {w} (tolerance {tol:.3e})");
    }
    Ok(())
}

fn sums(x: Tensor<4>) -> Vec<f32> {
    sample_sums(&x)
}

fn abs_sums(x: Tensor<4>) -> Vec<f32> {
    sample_sums(&x.abs())
}

fn nz(x: Tensor<4>) -> Tensor<4> {
    x.not_equal_elem(0.0).float()
}

/// The sum that `rule` must give at a linear layer, from the documented conservation identity.
fn expected_linear(
    rule: &str,
    layer: &dyn LinearLayer,
    x: &Tensor<4>,
    r: &Tensor<4>,
    ctx_output: bool,
    layer_type: &LayerType,
) -> Option<Vec<f32>> {
    let w = layer.weight();
    let f = |x: Tensor<4>, w: &Tensor<4>| layer.forward_with(x, w, None);
    let (wp, wn) = (pos(w.clone()), neg(w.clone()));
    let (xp, xn) = (pos(x.clone()), neg(x.clone()));
    let r = r.clone();
    Some(match rule {
        "lrp0" => sums(r * nz(f(x.clone(), &w))),
        "epsilon" => {
            let z = layer.forward_with(x.clone(), &w, layer.bias());
            let zb = f(x.clone(), &w);
            let signed = z.clone().ones_like().mask_fill(z.clone().lower_elem(0.0), -1.0);
            sums(r * zb / (z + signed.mul_scalar(1e-3)))
        }
        "a1b0" | "a2b1" => {
            let (a, b) = if rule == "a1b0" { (1.0, 0.0) } else { (2.0, 1.0) };
            let act = nz(f(xp.clone(), &wp)) + nz(f(xn.clone(), &wn));
            let inh = nz(f(xp, &wn)) + nz(f(xn, &wp));
            sums(r.clone() * act.mul_scalar(a) - r * inh.mul_scalar(b))
        }
        "zplus" => sums(r * nz(f(xp, &wp) + f(xn, &wn))),
        "gamma" => {
            let rho = w.clone() + pos(w).mul_scalar(0.25);
            let rb = layer.bias().map(|b| b.clone() + b.clamp_min(0.0).mul_scalar(0.25));
            let z = layer.forward_with(x.clone(), &rho, rb);
            let zb = f(x.clone(), &rho);
            let signed = z.clone().ones_like().mask_fill(z.clone().lower_elem(0.0), -1.0);
            sums(r * zb / (z + signed.mul_scalar(1e-6)))
        }
        "flat" => sums(r * nz(f(x.ones_like(), &w.ones_like()))),
        "rap" if ctx_output && *layer_type == LayerType::Linear => {
            // Σ R̃ = Σ_j R_j (z_j + b_j sd(P,z) 1[A≠0] + b_j sd(N,z) 1[B≠0]).
            let a = f(xp.clone(), &wp);
            let bb = f(xp.clone(), &wn);
            let p = a.clone() + f(xn.clone(), &wn);
            let n = bb.clone() + f(xn, &wp);
            let z = p.clone() + n.clone();
            let bias = match layer.bias() {
                Some(b) => {
                    let [o] = b.dims();
                    b.reshape([1, o, 1, 1])
                }
                None => z.zeros_like(),
            };
            let sd = rap_attrib::kit::safe_div::<4>;
            let total = z.clone() + bias.clone() * sd(p, z.clone()) * nz(a) + bias * sd(n, z) * nz(bb);
            sums(r * total)
        }
        _ => return None,
    })
}

/// Per sample, how many of RAP's two input branches (`x⁺`, `|x⁻|`) propagate a nonzero `C`
/// (Eq. 7–9 of the paper as the reference computes them, with the safe divide).
fn rap_live_branches(layer: &dyn LinearLayer, x: &Tensor<4>, r: &Tensor<4>, layer_type: &LayerType) -> Vec<usize> {
    let sd = rap_attrib::kit::safe_div::<4>;
    let w = layer.weight();
    let (wp, wn) = (pos(w.clone()), neg(w).neg());
    let shape = x.dims();
    let mut live = vec![0usize; shape[0]];
    for u in [pos(x.clone()), neg(x.clone()).neg()] {
        let a = layer.forward_with(u.clone(), &wp, None);
        let n = layer.forward_with(u.clone(), &wn, None);
        let an = a.clone() + n.clone();
        let mask = nz(an.clone());
        let nu = sd(r.clone() * sd(n.clone(), an), n.clone());
        let c = if *layer_type == LayerType::Linear {
            u * (layer.transpose_with(sd(r.clone() * mask, a), &wp, shape) + layer.transpose_with(nu, &wn, shape))
        } else {
            let s1 = sd(pos(r.clone()) * mask.clone(), a);
            let s2 = sd(neg(r.clone()) * mask, n) + nu;
            u * (layer.transpose_with(s1, &wp, shape) + layer.transpose_with(s2, &wn, shape))
        };
        for (k, v) in live.iter_mut().zip(abs_sums(c)) {
            *k += usize::from(v > 0.0);
        }
    }
    live
}

/// Checks every recorded layer of one explanation against its rule's conservation identity.
fn output_layer(net: &RandomNet) -> String {
    let layers = net.spec["layers"].as_array().unwrap();
    let last = layers.iter().rev().find(|l| l["type"] == "Linear" || l["type"] == "Conv2d").unwrap();
    last["name"].as_str().unwrap().to_string()
}

fn check_layers(
    net: &SpecNetwork,
    output: &str,
    rule: &str,
    ex: &Explained,
    zbeta_input: bool,
) -> Result<(), TestCaseError> {
    for l in &ex.layers {
        let out_scale = abs_sums(l.output.clone());
        let got: Vec<f32> = {
            let mut acc = vec![0f32; out_scale.len()];
            for t in &l.inputs {
                for (a, s) in acc.iter_mut().zip(sums(t.clone())) {
                    *a += s;
                }
            }
            acc
        };
        let r = &l.output;
        let what = format!("rule {rule}, layer {} ({})", l.name, l.layer_type);
        let expected: Option<Vec<f32>> = match &l.layer_type {
            LayerType::Relu | LayerType::Dropout | LayerType::Flatten | LayerType::Concat => Some(sums(r.clone())),
            LayerType::MaxPool2d | LayerType::AvgPool2d | LayerType::AdaptiveAvgPool2d => {
                let layer = net.layer(&l.name).unwrap();
                let z = layer.forward(&l.name, &l.activations).unwrap();
                Some(sums(r.clone() * nz(z)))
            }
            LayerType::Add => Some(sums(r.clone() * nz(l.activations[0].clone() + l.activations[1].clone()))),
            LayerType::BatchNorm => Some(sums(r.clone() * nz(l.activations[0].clone()))),
            LayerType::Linear | LayerType::Conv2d => {
                let layer = net.layer(&l.name).unwrap().as_linear().unwrap();
                let x = &l.activations[0];
                let is_input_conv = l.layer_type == LayerType::Conv2d && l.name == "stem";
                if zbeta_input && is_input_conv {
                    // Z^β with per-sample bounds: conserves where Z ≠ 0.
                    let (lo, hi) = (sample_min(x.clone()), sample_max(x.clone()));
                    let w = layer.weight();
                    let ones = x.ones_like();
                    let z = layer.forward_with(x.clone(), &w, None)
                        - layer.forward_with(ones.clone() * lo, &pos(w.clone()), None)
                        - layer.forward_with(ones * hi, &neg(w), None);
                    Some(sums(r.clone() * nz(z)))
                } else if rule == "rap" {
                    let is_output = l.name == output;
                    match expected_linear(rule, layer, x, r, is_output, &l.layer_type) {
                        Some(e) => Some(e),
                        None => {
                            // Middle layer: each branch u ∈ {x⁺, |x⁻|} whose propagated
                            // C = u ⊙ (W⁺ᵀs₁ + |W⁻|ᵀs₂) is not all zero conserves ΣR exactly (the
                            // shift), an all-zero C gives 0. Which branches are live is derived
                            // here from Eq. 7–9 written out anew, not from the result.
                            let s = sums(r.clone());
                            let live = rap_live_branches(layer, x, r, &l.layer_type);
                            Some(s.iter().zip(&live).map(|(s, k)| *k as f32 * s).collect())
                        }
                    }
                } else {
                    expected_linear(rule, layer, x, r, false, &l.layer_type)
                }
            }
            _ => None,
        };
        if let Some(e) = expected {
            close(&got, &e, &out_scale, &what)?;
        }
    }
    Ok(())
}

/// BatchNorm as the reference's masked `Pass`, optionally Z^β at a Conv2d input layer, and
/// `rule` everywhere else (RAP starts from the one-hot, the LRP rules from the logit).
fn rule_composite(rule: &str, zbeta_input: bool) -> Composite {
    let rule_obj: Arc<dyn Rule> = match rule {
        "lrp0" => Arc::new(Lrp0::without_bias()),
        "epsilon" => Arc::new(Epsilon::new(1e-3).unwrap()),
        "a1b0" => Arc::new(AlphaBeta::new(1.0, 0.0).unwrap()),
        "a2b1" => Arc::new(AlphaBeta::new(2.0, 1.0).unwrap()),
        "zplus" => Arc::new(ZPlus::default()),
        "gamma" => Arc::new(Gamma::classic(0.25, 1e-6).unwrap()),
        "flat" => Arc::new(Flat::default()),
        _ => Arc::new(Rap::default()),
    };
    let initial = if rule == "rap" { InitialRelevance::OneHot } else { InitialRelevance::Logit };
    let mut c = Composite::new().with_initial(initial).with(Selector::Type(LayerType::BatchNorm), Pass::masked());
    if zbeta_input {
        c = c.with(Selector::All(vec![Selector::InputLayer, Selector::Type(LayerType::Conv2d)]), ZBeta::default());
    }
    c.with_shared(Selector::Any, rule_obj)
}

const RULES: [&str; 8] = ["lrp0", "epsilon", "a1b0", "a2b1", "zplus", "gamma", "flat", "rap"];

#[test]
fn every_rule_conserves_where_its_conditions_hold() {
    let device = device();
    runner()
        .run(&(any::<u64>(), any::<bool>(), any::<bool>()), |(seed, bias, mlp)| {
            let opts = NetOptions { bias, ..NetOptions::default() };
            let net = if mlp { random_mlp(seed, opts) } else { random_image_net(seed, opts) };
            let built = net.build(&device);
            let mut rng = Rng::new(seed ^ 1);
            let x = input_for(&net, &mut rng, 2, false, &device);
            for rule in RULES {
                for zbeta in [false, true] {
                    if zbeta && (mlp || rule != "lrp0" && rule != "rap") {
                        continue;
                    }
                    let ex = explain(&built, rule_composite(rule, zbeta), &x, true)
                        .map_err(|e| TestCaseError::fail(format!("{rule} on {}: {e}", net.summary)))?;
                    check_layers(&built, &output_layer(&net), rule, &ex, zbeta)
                        .map_err(|e| TestCaseError::fail(format!("{e} [net: {}]", net.summary)))?;
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn rap_input_relevance_sums_to_the_output_layer_relevance() {
    // Image networks whose linear layers after the stem see non-negative inputs, with Z^β at the
    // stem: the input relevance equals the target logit (Linear head, Eq. 5–6) or 1 (a
    // convolutional head, where the walk starts from the one-hot).
    let device = device();
    runner()
        .run(&any::<u64>(), |seed| {
            let net = random_image_net(seed, NetOptions::default());
            let built = net.build(&device);
            let mut rng = Rng::new(seed ^ 7);
            let x = input_for(&net, &mut rng, 2, false, &device);
            let ex = explain(&built, Composite::rap(), &x, true).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let c = &ex.conservation;
            if std::env::var("RAP_DEBUG").is_ok() {
                for (n, s) in &c.layers {
                    eprintln!("{n}: {s:?}");
                }
                eprintln!("logits {:?}", c.target_logits);
            }
            // Documented exception (see `Rap`): a layer whose propagated C is all zero for a sample
            // (Γ = 0: an all-zero input, or only negative relevance at a convolution without
            // negative weights) cannot pass relevance on; such draws are skipped, and counted.
            for l in &ex.layers {
                if matches!(l.layer_type, LayerType::Linear | LayerType::Conv2d) {
                    let got = abs_sums(l.inputs[0].clone());
                    let rel = abs_sums(l.output.clone());
                    let dead = got.iter().zip(&rel).any(|(g, r)| *g == 0.0 && *r > 0.0);
                    if dead {
                        SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    prop_assume!(!dead);
                }
            }
            // Z^β conserves where its denominator Z ≠ 0; Z = 0 happens where every input of a
            // receptive field sits at its bound (a 1×1 kernel on one channel, at the minimum pixel).
            let stem = ex.layers.iter().find(|l| l.name == "stem").unwrap();
            let layer = built.layer("stem").unwrap().as_linear().unwrap();
            let x0 = &stem.activations[0];
            let (lo, hi) = (sample_min(x0.clone()), sample_max(x0.clone()));
            let w = layer.weight();
            let z = layer.forward_with(x0.clone(), &w, None)
                - layer.forward_with(x0.ones_like() * lo, &pos(w.clone()), None)
                - layer.forward_with(x0.ones_like() * hi, &neg(w), None);
            let lost = abs_sums(stem.output.clone() * z.equal_elem(0.0).float());
            if lost.iter().any(|v| *v > 0.0) {
                SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            prop_assume!(lost.iter().all(|v| *v == 0.0));
            let linear_head = net.spec["layers"].as_array().unwrap().last().unwrap()["type"] == "Linear";
            // A convolutional head whose target map is all zero (logit 0) has nothing to pool.
            if !(linear_head || ex.conservation.target_logits.iter().all(|l| *l > 0.0)) {
                SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            prop_assume!(linear_head || ex.conservation.target_logits.iter().all(|l| *l > 0.0));
            let want: Vec<f32> = if linear_head { c.target_logits.clone() } else { vec![1.0; c.input_sums.len()] };
            // Eq. 5 shares the bias as b·P/z and b·N/z; where z is small next to P and N these two
            // shares are large and of opposite sign, so float32 rounding of order
            // ε·|b|(|P|+|N|)/|z| enters the sum. The tolerance adds that bound (16 ε).
            let mut conditioning = vec![0f32; want.len()];
            if linear_head {
                let fc = ex.layers.iter().rev().find(|l| l.layer_type == LayerType::Linear).unwrap();
                let layer = built.layer(&fc.name).unwrap().as_linear().unwrap();
                let x = &fc.activations[0];
                let w = layer.weight();
                let f = |x: Tensor<4>, w: &Tensor<4>| layer.forward_with(x, w, None);
                let (wp, wn) = (pos(w.clone()), neg(w.clone()));
                let (xp, xn) = (pos(x.clone()), neg(x.clone()));
                let p = f(xp.clone(), &wp) + f(xn.clone(), &wn);
                let n = f(xp, &wn) + f(xn, &wp);
                let z = p.clone() + n.clone();
                let [o] = layer.bias().unwrap().dims();
                let b = layer.bias().unwrap().reshape([1, o, 1, 1]).abs();
                let kappa = rap_attrib::kit::safe_div(b * (p.abs() + n.abs()), z.abs());
                conditioning = sums(kappa * fc.output.clone().abs());
            }
            let scale: Vec<f32> =
                want.iter().zip(&conditioning).map(|(w, k)| w.abs() + k * 16.0 * f32::EPSILON / TOL as f32).collect();
            close(&c.input_sums, &want, &scale, &format!("RAP total on {}", net.summary))
        })
        .unwrap();
    let skipped = SKIPPED.load(std::sync::atomic::Ordering::Relaxed);
    println!("RAP totals: {} networks checked, {skipped} draws with a Γ = 0 layer skipped", cases());
    assert!((skipped as u32) < cases(), "most draws were skipped: the property would be vacuous");
}

fn presets() -> Vec<(&'static str, Composite)> {
    vec![
        ("rap", Composite::rap()),
        ("lrp_a1b0", Composite::lrp_alpha_beta(1.0, 0.0).unwrap()),
        ("lrp_a2b1", Composite::lrp_alpha_beta(2.0, 1.0).unwrap()),
        ("epsilon", Composite::epsilon(1e-6).unwrap()),
        ("zennit_epsilon_plus", Composite::zennit_epsilon_plus()),
        ("zennit_epsilon_plus_flat", Composite::zennit_epsilon_plus_flat()),
        ("zennit_epsilon_gamma_box", Composite::zennit_epsilon_gamma_box(Bounds::Global(-3.0, 3.0))),
        ("zennit_epsilon_alpha2_beta1", Composite::zennit_epsilon_alpha2_beta1()),
        ("lrp0", rule_composite("lrp0", false)),
        ("flat", rule_composite("flat", false)),
        ("zplus", rule_composite("zplus", false)),
    ]
}

#[test]
fn no_rule_produces_nan_or_inf() {
    let device = device();
    runner()
        .run(&(any::<u64>(), any::<bool>(), any::<bool>()), |(seed, bias, mlp)| {
            let opts = NetOptions { bias, ..NetOptions::default() };
            let net = if mlp { random_mlp(seed, opts) } else { random_image_net(seed, opts) };
            let built = net.build(&device);
            let mut rng = Rng::new(seed ^ 3);
            let x = input_for(&net, &mut rng, 2, false, &device);
            let variants = [
                ("random", x.clone()),
                ("zeros", x.map(|t| t.zeros_like())),
                // Constant inputs make every max-pool window a tie.
                ("constant", x.map(|t| t.ones_like().mul_scalar(0.5))),
                ("1e6", x.map(|t| t.mul_scalar(1e6))),
                // Large negative inputs kill most ReLUs.
                ("dead", x.map(|t| t.abs().mul_scalar(-1e3))),
            ];
            for (name, input) in &variants {
                for (preset, composite) in presets() {
                    let ex = explain(&built, composite, input, false).map_err(|e| {
                        TestCaseError::fail(format!("{preset} on {name} input, net {}: {e}", net.summary))
                    })?;
                    prop_assert!(ex.rel.iter().all(|v| v.is_finite()), "{preset} on {name}: non-finite relevance");
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn explaining_a_batch_equals_explaining_each_sample() {
    let device = device();
    runner()
        .run(&(any::<u64>(), any::<bool>()), |(seed, mlp)| {
            let net = if mlp {
                random_mlp(seed, NetOptions::default())
            } else {
                random_image_net(seed, NetOptions::default())
            };
            let built = net.build(&device);
            let mut rng = Rng::new(seed ^ 5);
            let x = input_for(&net, &mut rng, 3, false, &device);
            for (preset, composite) in presets().into_iter().take(4) {
                let whole =
                    explain(&built, composite.clone(), &x, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let per = whole.rel.len() / x.batch();
                let max = whole.rel.iter().fold(0f32, |m, v| m.max(v.abs()));
                for i in 0..x.batch() {
                    let one = explain(&built, composite.clone(), &x.sample(i), false)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    for (a, b) in one.rel.iter().zip(&whole.rel[i * per..(i + 1) * per]) {
                        prop_assert!(
                            (a - b).abs() <= 1e-5 * max.max(1e-30),
                            "{preset}: sample {i}: {a} alone vs {b} in the batch"
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn transposed_operators_are_adjoints() {
    use rap_attrib::burn::nn::conv::Conv2dConfig;
    use rap_attrib::burn::nn::{LinearConfig, PaddingConfig2d};
    let device = device();
    runner()
        .run(
            &(
                1usize..=4,
                1usize..=3,
                1usize..=4,
                0usize..=2,
                1usize..=3,
                1usize..=3,
                3usize..=11,
                3usize..=11,
                any::<u64>(),
            ),
            |(k, stride, groups, pad, dil, cmul, h, w, seed)| {
                RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let cin = groups * (1 + (seed % 2) as usize);
                let cout = groups * cmul;
                prop_assume!(h + 2 * pad > dil * (k - 1) && w + 2 * pad > dil * (k - 1));
                let mut rng = Rng::new(seed);
                let conv = seeded(
                    Conv2dConfig::new([cin, cout], [k, k])
                        .with_stride([stride, stride])
                        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                        .with_dilation([dil, dil])
                        .with_groups(groups)
                        .init(&device),
                    &mut rng,
                );
                let x = tensor4(random_input(&mut rng, &[0, cin, h, w], 2, false), [2, cin, h, w], &device);
                let wt = LinearLayer::weight(&conv);
                let y_shape = conv.forward_with(x.clone(), &wt, None).dims();
                let y = tensor4(random_input(&mut rng, &y_shape, y_shape[0], false), y_shape, &device);
                let lhs = (conv.forward_with(x.clone(), &wt, None) * y.clone()).sum().into_scalar::<f32>();
                let xt = conv.transpose_with(y, &wt, x.dims());
                prop_assert_eq!(xt.dims(), x.dims());
                let rhs = (x.clone() * xt.clone()).sum().into_scalar::<f32>();
                let scale = (x.clone().abs() * xt.abs()).sum().into_scalar::<f32>();
                prop_assert!(
                    (lhs - rhs).abs() <= 1e-4 * scale.max(1e-6),
                    "conv k{k} s{stride} p{pad} d{dil} g{groups} {h}x{w}: {lhs} vs {rhs}"
                );
                // Linear, on the same random draw.
                let (fin, fout) = (cin * 3, cout + 1);
                let lin = seeded(LinearConfig::new(fin, fout).init(&device), &mut rng);
                let xl = tensor4(random_input(&mut rng, &[0, fin], 2, false), [2, fin, 1, 1], &device);
                let yl = tensor4(random_input(&mut rng, &[0, fout], 2, false), [2, fout, 1, 1], &device);
                let wl = LinearLayer::weight(&lin);
                let l1 = (lin.forward_with(xl.clone(), &wl, None) * yl.clone()).sum().into_scalar::<f32>();
                let l2 = (xl.clone() * lin.transpose_with(yl, &wl, xl.dims())).sum().into_scalar::<f32>();
                prop_assert!((l1 - l2).abs() <= 1e-4 * l1.abs().max(1.0), "linear: {l1} vs {l2}");
                // BatchNorm (a diagonal map), on the conv's input.
                let bn = rap_attrib::burn::nn::BatchNormConfig::new(cin).init(&device);
                let wb = LinearLayer::weight(&bn);
                let yb = tensor4(random_input(&mut rng, &[0, cin, h, w], 2, false), [2, cin, h, w], &device);
                let b1 = (bn.forward_with(x.clone(), &wb, None) * yb.clone()).sum().into_scalar::<f32>();
                let b2 = (x.clone() * bn.transpose_with(yb, &wb, x.dims())).sum().into_scalar::<f32>();
                prop_assert!((b1 - b2).abs() <= 1e-4 * b1.abs().max(1.0), "batch norm: {b1} vs {b2}");
                Ok(())
            },
        )
        .unwrap();
    println!("adjoint cases run: {}", RUNS.load(std::sync::atomic::Ordering::Relaxed));
}

static MERGED: AtomicUsize = AtomicUsize::new(0);
static NO_BN: AtomicUsize = AtomicUsize::new(0);

#[test]
fn merging_batch_norm_keeps_the_forward_output() {
    let device = device();
    runner()
        .run(&any::<u64>(), |seed| {
            let net = random_image_net(seed, NetOptions::default());
            let built = net.build(&device);
            let mut rng = Rng::new(seed ^ 9);
            let Input::Image(x) = input_for(&net, &mut rng, 2, false, &device) else { unreachable!() };
            let plain = Explainer::new(&built, Composite::epsilon(1e-6).unwrap());
            let (graph, out) = plain.graph(&x).unwrap();
            let reference = graph.value(out).unwrap().clone();
            let bn_names: Vec<String> = graph
                .op_names()
                .into_iter()
                .filter(|n| {
                    net.spec["layers"].as_array().unwrap().iter().any(|l| l["name"] == *n && l["type"] == "BatchNorm2d")
                })
                .map(String::from)
                .collect();
            let merged = Explainer::new(&built, Composite::epsilon(1e-6).unwrap().with_merged_batch_norm(true));
            let (mut graph, out) = merged.graph(&x).unwrap();
            // A merged BatchNorm stays in the trace as an identity without a linear view.
            let left: Vec<&str> =
                graph.linear_op_names().into_iter().filter(|n| bn_names.iter().any(|b| b == n)).collect();
            if bn_names.is_empty() {
                NO_BN.fetch_add(1, Ordering::Relaxed);
            } else {
                // The generator puts every BatchNorm right after a convolution: all must be merged.
                prop_assert!(left.is_empty(), "BatchNorm {left:?} not merged [{}]", net.summary);
                MERGED.fetch_add(bn_names.len(), Ordering::Relaxed);
            }
            // The rewritten graph, run forward again from its input.
            graph.replay_from(0).unwrap();
            let again = graph.value(out).unwrap().clone();
            let (a, b) = (to_vec(&reference), to_vec(&again));
            let max = a.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(&b) {
                prop_assert!((u - v).abs() <= 1e-5 * max, "merged BN changed the output: {u} vs {v} [{}]", net.summary);
            }
            Ok(())
        })
        .unwrap();
    let (merged, without) = (MERGED.load(Ordering::Relaxed), NO_BN.load(Ordering::Relaxed));
    println!("BatchNorm layers merged: {merged}; networks without one: {without}");
    assert!(
        merged > 0 && without * 4 < cases() as usize,
        "too few BatchNorm layers drawn: {merged} merged, {without} nets without"
    );
}
