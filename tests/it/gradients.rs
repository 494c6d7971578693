//! Gradient baselines on cases computed by hand, their identities (integrated gradients'
//! completeness, guided backprop = gradient where no negative signal passes a ReLU), batches,
//! and errors. Runs on the device of `RAP_TEST_DEVICE`.

use crate::common;

use common::{NetOptions, Rng, device, random_image_net, random_input, random_mlp, tensor2, tensor4};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::gradients::{
    GradientExplainer, GradientMethod, IgBaseline, IntegratedGradients, Quadrature, SmoothGrad,
};
use rap_attrib::kit::to_vec;
use rap_attrib::spec::{HostTensor, SpecNetwork};
use rap_attrib::{AttribError, Target};
use serde_json::json;
use std::collections::HashMap;

fn host(shape: Vec<usize>, values: &[f64]) -> HostTensor {
    HostTensor { shape, values: values.iter().map(|&v| v as f32).collect() }
}

/// `y = W x + b` with W = [[1, -2, 3], [0.5, 4, -1]], b = [0.25, -0.5].
fn linear_model() -> SpecNetwork {
    let spec = json!({"layers": [{"name": "fc", "type": "Linear", "in_features": 3, "out_features": 2, "bias": true}],
                      "input_shape": [0, 3]});
    let mut p = HashMap::new();
    p.insert("fc.weight".to_string(), host(vec![2, 3], &[1.0, -2.0, 3.0, 0.5, 4.0, -1.0]));
    p.insert("fc.bias".to_string(), host(vec![2], &[0.25, -0.5]));
    SpecNetwork::from_value(&spec, &p, "", &device()).unwrap()
}

/// x → fc1 (identity) → ReLU → fc2 [[2, -1], [-1, 2]] → ReLU → fc3 [[1, -1], [0, 0]].
fn two_relu_model() -> SpecNetwork {
    let spec = json!({"layers": [
        {"name": "fc1", "type": "Linear", "in_features": 2, "out_features": 2, "bias": false},
        {"name": "r1", "type": "ReLU"},
        {"name": "fc2", "type": "Linear", "in_features": 2, "out_features": 2, "bias": false},
        {"name": "r2", "type": "ReLU"},
        {"name": "fc3", "type": "Linear", "in_features": 2, "out_features": 2, "bias": false}],
        "input_shape": [0, 2]});
    let mut p = HashMap::new();
    p.insert("fc1.weight".to_string(), host(vec![2, 2], &[1.0, 0.0, 0.0, 1.0]));
    p.insert("fc2.weight".to_string(), host(vec![2, 2], &[2.0, -1.0, -1.0, 2.0]));
    p.insert("fc3.weight".to_string(), host(vec![2, 2], &[1.0, -1.0, 0.0, 0.0]));
    SpecNetwork::from_value(&spec, &p, "", &device()).unwrap()
}

fn explain(model: &SpecNetwork, method: GradientMethod, x: Tensor<2>, target: Target) -> Vec<f32> {
    to_vec(&GradientExplainer::new(model, method).explain(x, target).unwrap().relevance)
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn linear_model_gradients_are_the_weight_row() {
    let model = linear_model();
    let x = || tensor2(vec![1.0, 2.0, -1.0, 0.5, -3.0, 2.0], [2, 3], &device());
    let t = || Target::Classes(vec![0, 1]);
    let g = explain(&model, GradientMethod::Gradient, x(), t());
    assert_eq!(g, vec![1.0, -2.0, 3.0, 0.5, 4.0, -1.0]);
    let ixg = explain(&model, GradientMethod::InputTimesGradient, x(), t());
    assert_eq!(ixg, vec![1.0, -4.0, -3.0, 0.25, -12.0, -2.0]);
    // Integrated gradients on a linear model: (x − x̄) ⊙ w, whatever the steps or quadrature.
    for q in [Quadrature::RiemannRight, Quadrature::Midpoint, Quadrature::Trapezoid] {
        for steps in [1, 3, 20] {
            let ig = IntegratedGradients::default().with_steps(steps).with_quadrature(q);
            let r = explain(&model, GradientMethod::IntegratedGradients(ig.clone()), x(), t());
            assert!(close(&r, &ixg, 1e-6), "{q:?} {steps}: {r:?}");
            let shifted = ig.with_baseline(IgBaseline::Constant(1.0));
            let r = explain(&model, GradientMethod::IntegratedGradients(shifted), x(), t());
            let want = [0.0, -2.0, -6.0, -0.25, -16.0, -1.0];
            assert!(close(&r, &want, 1e-6), "{q:?} {steps} baseline 1: {r:?}");
        }
    }
    // SmoothGrad of a linear model is its gradient for any noise.
    let sg = GradientMethod::SmoothGrad(SmoothGrad::default().with_samples(7).with_noise(0.5));
    assert!(close(&explain(&model, sg, x(), t()), &g, 1e-6));
}

#[test]
fn guided_backprop_drops_negative_signal_at_relus_by_hand() {
    let model = two_relu_model();
    let x = || tensor2(vec![1.0, 1.0], [1, 2], &device());
    // Forward: h1 = [1, 1], z2 = [1, 1], h2 = [1, 1], y0 = 0.
    // Gradient: [1, −1] through r2, fc2ᵀ → [3, −3], through r1 → [3, −3].
    assert_eq!(explain(&model, GradientMethod::Gradient, x(), Target::Classes(vec![0])), vec![3.0, -3.0]);
    // Guided: r2 keeps [1, 0]; fc2ᵀ → [2, −1]; r1 keeps [2, 0].
    assert_eq!(explain(&model, GradientMethod::GuidedBackprop, x(), Target::Classes(vec![0])), vec![2.0, 0.0]);
    // A dead unit stops both: x = [1, −1] → h1 = [1, 0], z2 = [2, −1], h2 = [2, 0].
    let x2 = tensor2(vec![1.0, -1.0], [1, 2], &device());
    assert_eq!(explain(&model, GradientMethod::Gradient, x2.clone(), Target::Classes(vec![0])), vec![2.0, 0.0]);
    assert_eq!(explain(&model, GradientMethod::GuidedBackprop, x2, Target::Classes(vec![0])), vec![2.0, 0.0]);
}

#[test]
fn integrated_gradients_completeness_gap_shrinks_with_steps() {
    let mut gaps = [0.0f64; 3];
    let steps = [4, 32, 256];
    for seed in 0..8 {
        let net = random_mlp(seed, NetOptions::default());
        let model = net.build(&device());
        let mut rng = Rng::new(seed + 7);
        let f = net.input_shape[1];
        let x = tensor2(random_input(&mut rng, &net.input_shape, 1, false), [1, f], &device());
        let logits =
            GradientExplainer::new(&model, GradientMethod::Gradient).explain(x.clone(), Target::Predicted).unwrap();
        let t = logits.targets[0];
        let fx = to_vec(&logits.logits)[t] as f64;
        let zero = Tensor::<2>::zeros([1, f], &device());
        let f0 = to_vec(
            &GradientExplainer::new(&model, GradientMethod::Gradient).explain(zero, Target::Predicted).unwrap().logits,
        )[t] as f64;
        for (i, &m) in steps.iter().enumerate() {
            let ig = GradientMethod::IntegratedGradients(IntegratedGradients::default().with_steps(m));
            let r = explain(&model, ig, x.clone(), Target::Classes(vec![t]));
            let total: f64 = r.iter().map(|&v| v as f64).sum();
            gaps[i] += (total - (fx - f0)).abs();
        }
    }
    eprintln!("IG completeness gap summed over 8 MLPs: {:?} at steps {steps:?}", gaps);
    assert!(gaps[0] > 1e-3, "the test networks must have kinks on the path: {gaps:?}");
    assert!(gaps[1] < gaps[0] && gaps[2] < gaps[1], "{gaps:?}");
    assert!(gaps[2] < gaps[0] / 10.0, "{gaps:?}");
}

#[test]
fn batches_equal_single_samples_for_every_method() {
    let net = random_image_net(3, NetOptions::default());
    let model = net.build(&device());
    let mut rng = Rng::new(5);
    let b = 3;
    let [c, h, w] = [net.input_shape[1], net.input_shape[2], net.input_shape[3]];
    let values = random_input(&mut rng, &net.input_shape, b, false);
    let batch = tensor4(values.clone(), [b, c, h, w], &device());
    let per = c * h * w;
    let methods = [
        GradientMethod::Gradient,
        GradientMethod::InputTimesGradient,
        GradientMethod::GuidedBackprop,
        GradientMethod::IntegratedGradients(IntegratedGradients::default().with_steps(8)),
        GradientMethod::SmoothGrad(SmoothGrad::default().with_samples(5).with_seed(9)),
    ];
    for m in methods {
        let all =
            GradientExplainer::new(&model, m.clone()).with_chunk(4).explain(batch.clone(), Target::Predicted).unwrap();
        let all_r = to_vec(&all.relevance);
        for i in 0..b {
            let one = tensor4(values[i * per..(i + 1) * per].to_vec(), [1, c, h, w], &device());
            let r = GradientExplainer::new(&model, m.clone()).with_chunk(3).explain(one, Target::Predicted).unwrap();
            assert_eq!(r.targets[0], all.targets[i]);
            let r = to_vec(&r.relevance);
            let scale = r.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-6);
            let err = r.iter().zip(&all_r[i * per..(i + 1) * per]).fold(0.0f32, |a, (p, q)| a.max((p - q).abs()));
            assert!(err <= 1e-5 * scale, "{}: sample {i} differs by {err} (scale {scale})", m.name());
        }
    }
}

#[test]
fn smoothgrad_is_seeded_and_zero_noise_is_the_gradient() {
    let net = random_mlp(4, NetOptions::default());
    let model = net.build(&device());
    let f = net.input_shape[1];
    let x = || tensor2(random_input(&mut Rng::new(1), &net.input_shape, 2, false), [2, f], &device());
    let g = explain(&model, GradientMethod::Gradient, x(), Target::Predicted);
    let sg = |noise, seed| {
        GradientMethod::SmoothGrad(SmoothGrad::default().with_noise(noise).with_samples(6).with_seed(seed))
    };
    assert!(close(&explain(&model, sg(0.0, 1), x(), Target::Predicted), &g, 1e-6));
    let a = explain(&model, sg(0.3, 1), x(), Target::Predicted);
    let b = explain(&model, sg(0.3, 1), x(), Target::Predicted);
    let c = explain(&model, sg(0.3, 2), x(), Target::Predicted);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bad_settings_and_inputs_are_typed_errors() {
    let model = linear_model();
    let x = || tensor2(vec![1.0, 2.0, 3.0], [1, 3], &device());
    let ig0 = GradientMethod::IntegratedGradients(IntegratedGradients::default().with_steps(0));
    let e = GradientExplainer::new(&model, ig0).explain(x(), Target::Predicted).unwrap_err();
    assert!(matches!(e, AttribError::InvalidParameter(_)), "{e}");
    let sg0 = GradientMethod::SmoothGrad(SmoothGrad::default().with_samples(0));
    assert!(matches!(
        GradientExplainer::new(&model, sg0).explain(x(), Target::Predicted),
        Err(AttribError::InvalidParameter(_))
    ));
    let sgn = GradientMethod::SmoothGrad(SmoothGrad::default().with_noise(f32::NAN));
    assert!(matches!(
        GradientExplainer::new(&model, sgn).explain(x(), Target::Predicted),
        Err(AttribError::InvalidParameter(_))
    ));
    let bad = tensor4(vec![0.0; 6], [1, 6, 1, 1], &device());
    let igb = GradientMethod::IntegratedGradients(
        IntegratedGradients::default().with_baseline(IgBaseline::Tensor(Box::new(bad))),
    );
    let e = GradientExplainer::new(&model, igb).explain(x(), Target::Predicted).unwrap_err();
    assert!(matches!(e, AttribError::Shape { .. }), "{e}");
    let nan = tensor2(vec![1.0, f32::NAN, 3.0], [1, 3], &device());
    let e = GradientExplainer::new(&model, GradientMethod::Gradient).explain(nan, Target::Predicted).unwrap_err();
    assert!(matches!(e, AttribError::NonFinite { .. }), "{e}");
    let e =
        GradientExplainer::new(&model, GradientMethod::Gradient).explain(x(), Target::Classes(vec![5])).unwrap_err();
    assert!(matches!(e, AttribError::TargetOutOfRange { .. }), "{e}");
}
