//! Bad input gives typed errors, never a panic.

mod common;

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
    let x = Tensor::<3>::ones([1, 2, 2], &device());
    let err = Explainer::new(&m, Composite::rap()).explain(x, Target::Predicted).unwrap_err();
    assert_eq!(err, AttribError::InputRank { got: 3 });
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
