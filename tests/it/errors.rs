//! Bad input gives typed errors, never a panic.

use crate::common;

use common::{NetOptions, device, random_image_net};
use rap_attrib::burn::nn::conv::Conv2dConfig;
use rap_attrib::burn::nn::{LinearConfig, Relu};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::layers::{LayerType, Relevance};
use rap_attrib::rules::{AlphaBeta, Epsilon, Gamma};
use rap_attrib::spec::{SpecNetwork, parse_safetensors};
use rap_attrib::{AttribError, Composite, Explain, Explainer, Node, Result, Target, Tracer};

struct Mlp {
    fc1: rap_attrib::burn::nn::Linear,
    act: Relu,
    fc2: rap_attrib::burn::nn::Linear,
}

impl Explain for Mlp {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let x = t.layer("fc1", &self.fc1, x)?;
        let x = t.layer("act", &self.act, x)?;
        t.layer("fc2", &self.fc2, x)
    }
}

fn mlp() -> Mlp {
    let d = device();
    Mlp { fc1: LinearConfig::new(4, 6).init(&d), act: Relu::new(), fc2: LinearConfig::new(6, 3).init(&d) }
}

#[test]
fn wrong_rank_is_an_error() {
    let m = mlp();
    let x = Tensor::<6>::ones([1, 2, 2, 2, 2, 2], &device());
    let err = Explainer::new(&m, Composite::rap()).explain(x, Target::Predicted).unwrap_err();
    assert_eq!(err, AttribError::InputRank { got: 6 });
    // A volume reaches the first layer, which names itself and the logical shape.
    let x = Tensor::<5>::ones([1, 2, 2, 2, 2], &device());
    let err = Explainer::new(&m, Composite::rap()).explain(x, Target::Predicted).unwrap_err();
    assert!(
        matches!(&err, AttribError::Shape { layer, got, .. } if layer == "fc1" && got == &vec![1, 2, 2, 2, 2]),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_the_layer_and_the_expected_shape() {
    let m = mlp();
    let x = Tensor::<2>::ones([2, 5], &device());
    let err = Explainer::new(&m, Composite::rap()).explain(x, Target::Predicted).unwrap_err();
    match err {
        AttribError::Shape { layer, expected, got } => {
            assert_eq!(layer, "fc1");
            assert!(expected.contains('4'), "{expected}");
            assert_eq!(got, vec![2, 5, 1, 1]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let net = random_image_net(3, NetOptions::default());
    let built = net.build(&device());
    let s = &net.input_shape;
    let x = Tensor::<4>::ones([1, s[1] + 1, s[2], s[3]], &device());
    assert!(matches!(
        Explainer::new(&built, Composite::rap()).explain(x, Target::Predicted),
        Err(AttribError::Shape { .. })
    ));
    // An image too small for the stem's kernel is an error, not a panic.
    let conv = Conv2dConfig::new([1, 1], [5, 5]).init(&device());
    let input = [Tensor::<4>::ones([1, 1, 3, 3], &device())];
    assert!(matches!(Relevance::forward(&conv, "c", &input), Err(AttribError::Shape { .. })));
}

#[test]
fn target_out_of_range_or_miscounted() {
    let m = mlp();
    let x = Tensor::<2>::ones([2, 4], &device());
    let e = Explainer::new(&m, Composite::rap());
    assert_eq!(
        e.explain(x.clone(), Target::Classes(vec![0, 3])).unwrap_err(),
        AttribError::TargetOutOfRange { sample: 1, class: 3, classes: 3 }
    );
    assert_eq!(
        e.explain(x.clone(), Target::Classes(vec![0])).unwrap_err(),
        AttribError::TargetCount { got: 1, batch: 2 }
    );
    let bad = Tensor::<2>::ones([2, 4], &device());
    assert!(matches!(e.explain(x, Target::Relevance(Box::new(bad))), Err(AttribError::OutputRelevanceShape { .. })));
}

#[test]
fn empty_batch_is_an_error() {
    let m = mlp();
    let x = Tensor::<2>::zeros([0, 4], &device());
    assert_eq!(
        Explainer::new(&m, Composite::rap()).explain(x, Target::Predicted).unwrap_err(),
        AttribError::EmptyBatch
    );
}

#[test]
fn nan_or_inf_input_is_an_error() {
    let m = mlp();
    let e = Explainer::new(&m, Composite::rap());
    for bad in [f32::NAN, f32::INFINITY] {
        let x = Tensor::<2>::from_data([[0.0, bad, 1.0, 2.0]], &device());
        assert!(matches!(e.explain(x, Target::Predicted), Err(AttribError::NonFinite { .. })));
    }
}

#[test]
fn invalid_rule_parameters_are_errors() {
    assert!(matches!(AlphaBeta::new(2.0, 0.5), Err(AttribError::InvalidParameter(_))));
    assert!(matches!(AlphaBeta::new(0.5, -0.5), Err(AttribError::InvalidParameter(_))));
    assert!(matches!(Epsilon::new(0.0), Err(AttribError::InvalidParameter(_))));
    assert!(matches!(Epsilon::new(f64::NAN), Err(AttribError::InvalidParameter(_))));
    assert!(matches!(Gamma::new(-1.0), Err(AttribError::InvalidParameter(_))));
    assert!(matches!(Composite::lrp_alpha_beta(3.0, 1.0), Err(AttribError::InvalidParameter(_))));
}

/// A layer type the engine does not know: it implements `forward` but no propagation.
struct Square;

impl Relevance for Square {
    fn layer_type(&self) -> LayerType {
        LayerType::Custom("Square".into())
    }
    fn forward(&self, _name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        Ok(inputs[0].clone().powi_scalar(2))
    }
}

struct WithSquare {
    fc: rap_attrib::burn::nn::Linear,
    sq: Square,
}

impl Explain for WithSquare {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let x = t.layer("square", &self.sq, x)?;
        t.layer("fc", &self.fc, x)
    }
}

#[test]
fn unsupported_layer_is_named_in_the_error() {
    let m = WithSquare { fc: LinearConfig::new(4, 2).init(&device()), sq: Square };
    let x = Tensor::<2>::ones([1, 4], &device());
    match Explainer::new(&m, Composite::rap()).explain(x, Target::Predicted).unwrap_err() {
        AttribError::UnsupportedLayer { layer, layer_type, .. } => {
            assert_eq!(layer, "square");
            assert_eq!(layer_type, "Square");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_composite_without_a_matching_rule_is_an_error() {
    let m = mlp();
    let x = Tensor::<2>::ones([1, 4], &device());
    let err = Explainer::new(&m, Composite::new()).explain(x, Target::Predicted).unwrap_err();
    assert!(matches!(err, AttribError::NoRule { .. }), "{err:?}");
}

#[test]
fn bad_descriptions_and_weights_are_errors() {
    let d = device();
    let net = random_image_net(11, NetOptions::default());
    // A missing tensor.
    let mut params = net.params.clone();
    let key = params.keys().find(|k| k.ends_with(".weight")).unwrap().clone();
    params.remove(&key);
    let err = SpecNetwork::from_value(&net.spec, &params, "", &d).unwrap_err();
    assert!(matches!(&err, AttribError::Weights(m) if m.contains(&key)), "{err:?}");
    // A wrongly shaped tensor.
    let mut params = net.params.clone();
    params.get_mut(&key).unwrap().shape.push(1);
    assert!(matches!(SpecNetwork::from_value(&net.spec, &params, "", &d), Err(AttribError::Weights(_))));
    // An unknown layer type, invalid JSON, a file that is not safetensors.
    let spec = serde_json::json!({"layers": [{"name": "x", "type": "Transformer"}]});
    assert!(matches!(SpecNetwork::from_value(&spec, &params, "", &d), Err(AttribError::UnsupportedLayer { .. })));
    assert!(matches!(SpecNetwork::from_json("{", &params, "", &d), Err(AttribError::Spec(_))));
    assert!(matches!(parse_safetensors(b"not a file"), Err(AttribError::Weights(_))));
}

#[test]
fn rule_parameters_are_accepted_exactly_over_their_documented_ranges() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use rap_attrib::rules::Stabilizer;
    let special = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(2.0),
        Just(-1e-300),
        Just(1e-300),
        -10.0..10.0f64,
    ];
    let config = Config { cases: 1000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&(special.clone(), special), |(a, b)| {
            prop_assert_eq!(Epsilon::new(a).is_ok(), a.is_finite() && a > 0.0);
            prop_assert_eq!(Gamma::new(a).is_ok(), a.is_finite() && a >= 0.0);
            prop_assert_eq!(Gamma::classic(a, b).is_ok(), a.is_finite() && a >= 0.0 && b.is_finite() && b > 0.0);
            let ab = a.is_finite() && b.is_finite() && a >= 1.0 && b >= 0.0 && ((a - b) - 1.0).abs() < 1e-12;
            prop_assert_eq!(AlphaBeta::new(a, b).is_ok(), ab);
            prop_assert_eq!(AlphaBeta::zennit(a, b).is_ok(), ab);
            for s in [Stabilizer::Epsilon(a), Stabilizer::Add(a)] {
                prop_assert_eq!(s.checked("rule", "stabilizer").is_ok(), a.is_finite() && a > 0.0);
            }
            if let Err(e) = Epsilon::new(a) {
                prop_assert!(e.to_string().contains("epsilon"), "{}", e);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn reversed_or_non_finite_bounds_are_an_error_naming_the_layer() {
    use rap_attrib::rules::{Bounds, ZBeta};
    let d = device();
    let net = random_image_net(5, NetOptions::default());
    let built = net.build(&d);
    let s = &net.input_shape;
    for bounds in
        [Bounds::Global(1.0, -1.0), Bounds::Global(f32::NAN, 1.0), Bounds::PerChannel(vec![0.0; 3], vec![-1.0; 3])]
    {
        let c = Composite::new().with(rap_attrib::Selector::Any, ZBeta::new(bounds.clone()));
        let x = Tensor::<4>::ones([1, s[1], s[2], s[3]], &d);
        match Explainer::new(&built, c).explain(x, Target::Predicted) {
            Err(AttribError::InvalidParameter(m)) => assert!(m.contains("Z^β") && m.contains("low"), "{m}"),
            other => panic!("{bounds:?}: {other:?}"),
        }
    }
}

#[test]
fn a_composite_naming_an_unknown_layer_lists_the_layers_the_model_has() {
    let m = mlp();
    let x = Tensor::<2>::ones([1, 4], &device());
    let cases = [
        Composite::rap().with_input_layers(["fc0"]),
        Composite::rap().with_output_layers(["fc3"]),
        Composite::new().with(rap_attrib::Selector::Name("fc9".into()), Epsilon::default()),
        Composite::new().with(rap_attrib::Selector::NamePrefix("conv".into()), Epsilon::default()),
    ];
    for c in cases {
        match Explainer::new(&m, c).explain(x.clone(), Target::Predicted) {
            Err(AttribError::UnknownLayer { known, .. }) => assert_eq!(known, "fc1, act, fc2"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn vanished_relevance_is_reported() {
    let d = device();
    let mut m = mlp();
    // Every hidden unit dead: a bias of −100 behind the ReLU.
    m.fc1.bias = Some(rap_attrib::burn::module::Param::from_tensor(Tensor::<1>::full([6], -100.0, &d)));
    let x = Tensor::<2>::from_data([[0.1, 0.2, 0.3, 0.4]], &d);
    let e = Explainer::new(&m, Composite::epsilon(1e-6).unwrap()).explain(x.clone(), Target::Classes(vec![0])).unwrap();
    assert_eq!(e.vanished_samples(), vec![0]);
    assert_eq!(e.conservation().vanished, vec![0]);
    let mut alive = mlp();
    alive.fc1.bias = None;
    let e = Explainer::new(&alive, Composite::epsilon(1e-6).unwrap()).explain(x, Target::Classes(vec![0])).unwrap();
    let any = rap_attrib::kit::to_vec(&e.relevance).iter().any(|v| *v != 0.0);
    assert_eq!(e.vanished_samples().is_empty(), any);
}

#[test]
fn description_fields_out_of_range_name_the_layer_the_field_and_the_value() {
    let d = device();
    let dir = common::data().join("golden");
    let text = std::fs::read_to_string(dir.join("case_b_vgg.json")).unwrap();
    let base: serde_json::Value = serde_json::from_str(&text).unwrap();
    let params = rap_attrib::spec::read_safetensors(dir.join("case_b_vgg.safetensors")).unwrap();
    let cases: [(usize, &str, serde_json::Value, &str); 7] = [
        (0, "stride", serde_json::json!(0), "stride"),
        (0, "kernel_size", serde_json::json!([3, 100000]), "kernel_size"),
        (0, "bias", serde_json::json!("yes"), "bias"),
        (0, "out_channels", serde_json::json!(1u64 << 40), "out_channels"),
        (2, "padding", serde_json::json!(2), "padding"),
        (6, "in_features", serde_json::json!(-3), "in_features"),
        (1, "type", serde_json::json!("Dropout"), "features.1"),
    ];
    for (layer, field, value, needle) in cases {
        let mut v = base.clone();
        v["layers"][layer][field] = value.clone();
        if field == "type" {
            v["layers"][layer]["p"] = serde_json::json!(1.5);
        }
        match SpecNetwork::from_value(&v, &params, "param.", &d) {
            Err(AttribError::Spec(m)) => assert!(m.contains(needle), "{field} = {value}: {m}"),
            other => panic!("{field} = {value}: {other:?}"),
        }
    }
    let mut v = base.clone();
    let first = v["layers"][0].clone();
    v["layers"].as_array_mut().unwrap().push(first);
    match SpecNetwork::from_value(&v, &params, "param.", &d) {
        Err(AttribError::Spec(m)) => assert!(m.contains("features.0") && m.contains("twice"), "{m}"),
        other => panic!("duplicate: {other:?}"),
    }
}

#[test]
fn check_trace_accepts_a_faithful_trace_and_names_where_a_wrong_one_parts() {
    struct Skips<'a>(&'a Mlp);
    impl Explain for Skips<'_> {
        fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
            // Forgets the ReLU.
            let x = t.layer("fc1", &self.0.fc1, x)?;
            t.layer("fc2", &self.0.fc2, x)
        }
    }
    /// A layer whose traced forward doubles while its own module triples.
    struct Scale;
    impl Relevance for Scale {
        fn layer_type(&self) -> LayerType {
            LayerType::Custom("Scale".into())
        }
        fn forward(&self, _: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
            Ok(inputs[0].clone().mul_scalar(2.0))
        }
        fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
            Some(inputs[0].clone().mul_scalar(3.0))
        }
    }
    struct Scaled<'a>(&'a Mlp, Scale);
    impl Explain for Scaled<'_> {
        fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
            let x = t.layer("scale", &self.1, x)?;
            let x = t.layer("fc1", &self.0.fc1, x)?;
            let x = t.layer("act", &self.0.act, x)?;
            t.layer("fc2", &self.0.fc2, x)
        }
    }
    let d = device();
    let m = mlp();
    let x = Tensor::<2>::from_data([[0.5, -1.0, 0.25, 2.0], [-0.5, 1.0, 1.5, -2.0]], &d);
    let forward = |x: Tensor<2>| m.fc2.forward(m.act.forward(m.fc1.forward(x)));
    let worst = Explainer::new(&m, Composite::rap()).check_trace(x.clone(), forward(x.clone()), 1e-5).unwrap();
    assert!(worst <= 1e-5, "{worst}");
    match Explainer::new(&Skips(&m), Composite::rap()).check_trace(x.clone(), forward(x.clone()), 1e-5) {
        Err(AttribError::TraceMismatch { layer, reason, .. }) => {
            assert_eq!(layer, "fc2");
            assert!(reason.contains("skips"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The model computes with its modules (3x); the trace's own Scale doubles.
    let thrice = forward(x.clone().mul_scalar(3.0));
    match Explainer::new(&Scaled(&m, Scale), Composite::rap()).check_trace(x.clone(), thrice.clone(), 1e-5) {
        Ok(_) => panic!("the trace's Scale differs from its module"),
        Err(AttribError::TraceMismatch { layer, .. }) => assert_eq!(layer, "scale"),
        Err(other) => panic!("{other:?}"),
    }
    assert!(Explainer::new(&m, Composite::rap()).check_trace(x, thrice, f32::NAN).is_err());
}
