//! Open composites: presets by name, selectors by predicate, sharing mapped per layer, a
//! canonizer of one's own, and a linear layer whose own relevance step the walk calls.

use crate::common;

use rap_attrib::burn::nn::{Linear, LinearConfig, Relu};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::canonizer::{Canonizer, KeptWeights, Reweighted};
use rap_attrib::graph::Graph;
use rap_attrib::kit::to_vec;
use rap_attrib::layers::{LayerType, LinearLayer, LinearStructure, Relevance};
use rap_attrib::rules::{Epsilon, Rule, RuleContext, ShareRule, Sharing, ZPlus};
use rap_attrib::{AttribError, Composite, Explain, Explainer, Node, Result, Selector, Target, Tracer};
use std::sync::atomic::{AtomicUsize, Ordering};

/// fc1 → ReLU → fc2 → ReLU → fc3 (no biases), with a residual sum of the two ReLU outputs of
/// equal width.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    relu: Relu,
}

impl Mlp {
    fn new() -> Self {
        let device = common::device();
        let mut rng = common::Rng::new(12);
        let mut lin = |i, o| common::seeded(LinearConfig::new(i, o).with_bias(false).init(&device), &mut rng);
        Mlp { fc1: lin(5, 8), fc2: lin(8, 8), fc3: lin(8, 3), relu: Relu::new() }
    }
}

impl Explain for Mlp {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let a = t.layer("fc1", &self.fc1, x)?;
        let a = t.layer("relu1", &self.relu, a)?;
        let b = t.layer("fc2", &self.fc2, a)?;
        let b = t.layer("relu2", &self.relu, b)?;
        let c = t.add("add", b, a)?;
        t.layer("fc3", &self.fc3, c)
    }
}

fn input() -> Tensor<2> {
    common::normal(&mut common::Rng::new(1), [3, 5], &common::device())
}

#[test]
fn every_preset_parses_from_its_name_and_an_unknown_name_lists_them() {
    let model = Mlp::new();
    for name in Composite::PRESETS {
        let c: Composite = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let e = Explainer::new(&model, c).explain(input(), Target::Predicted).unwrap();
        assert_eq!(e.relevance.dims(), [3, 5], "{name}");
    }
    let err = "lrp-zero".parse::<Composite>().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, AttribError::InvalidParameter(_)) && text.contains("lrp-zero") && text.contains("rap"),
        "{text}"
    );
}

#[test]
fn a_predicate_selector_picks_layers_by_depth() {
    let model = Mlp::new();
    let composite = Composite::new()
        .with(Selector::when(|ctx| ctx.depth == 1 && ctx.layer_type == LayerType::Linear), ZPlus::default())
        .with(Selector::Any, Epsilon::default());
    let e = Explainer::new(&model, composite).record_layers(true).explain(input(), Target::Predicted).unwrap();
    let rules: Vec<(String, Option<String>)> =
        e.layers.iter().filter(|l| l.rule.is_some()).map(|l| (l.name.clone(), l.rule.clone())).collect();
    let zplus = ZPlus::default().name();
    let eps = Epsilon::default().name();
    assert_eq!(
        rules,
        vec![("fc1".into(), Some(eps.clone())), ("fc2".into(), Some(zplus)), ("fc3".into(), Some(eps))],
        "depth counts the rule-taking layers before each"
    );
}

#[test]
fn sharing_is_mapped_per_layer_and_its_names_are_checked() {
    let model = Mlp::new();
    let x = input();
    let everywhere = Composite::rap().with_sharing(Sharing::Norm(1e-6));
    let mapped = Composite::rap().with_sharing_for(Selector::Type(LayerType::Add), Sharing::Norm(1e-6));
    let a = Explainer::new(&model, everywhere).explain(x.clone(), Target::Predicted).unwrap().relevance;
    let b = Explainer::new(&model, mapped).explain(x.clone(), Target::Predicted).unwrap().relevance;
    // The one weight-free layer that shares is the sum: both composites treat it alike.
    assert_eq!(to_vec(&a), to_vec(&b));
    let unknown = Composite::rap().with_sharing_for(Selector::Name("no-such-add".into()), Sharing::Norm(1e-6));
    let err = Explainer::new(&model, unknown).explain(x, Target::Predicted).unwrap_err();
    assert!(matches!(err, AttribError::UnknownLayer { .. }), "{err}");
}

/// Zennit's Norm rule that passes on only half of what it receives: a rule for ops without
/// weights written outside the crate.
#[derive(Debug)]
struct HalfNorm;

impl ShareRule for HalfNorm {
    fn name(&self) -> String {
        "half-norm".into()
    }

    fn divide(&self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
        Sharing::Norm(1e-6).divide(r, z).mul_scalar(0.5)
    }
}

#[test]
fn a_share_rule_of_ones_own_is_mapped_and_applied() {
    let model = Mlp::new();
    let x = input();
    let eps = || Composite::new().with(Selector::Any, Epsilon::new(1e-6).unwrap());
    let norm = eps().with_sharing_for(Selector::Type(LayerType::Add), Sharing::Norm(1e-6));
    let half = eps().with_sharing_for(Selector::Type(LayerType::Add), HalfNorm);
    assert_eq!(half.sharing().name(), "safe-divide", "unmatched ops keep the default");
    let a = to_vec(&Explainer::new(&model, norm).explain(x.clone(), Target::Classes(vec![0; 3])).unwrap().relevance);
    let b = to_vec(&Explainer::new(&model, half).explain(x, Target::Classes(vec![0; 3])).unwrap().relevance);
    // Everything above the sum goes through it, and LRP-ε is linear in the relevance it is
    // handed: the user's rule halves the whole explanation, element by element.
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!((0.5 * a - b).abs() <= 1e-5 * scale, "element {i}: half of {a} is not {b}");
    }
}

/// Doubles the weight of the op named `fc3`: a canonizer of one's own, outside the crate.
#[derive(Debug)]
struct DoubleLast;

impl Canonizer for DoubleLast {
    fn name(&self) -> String {
        "double-last".into()
    }

    fn apply(&self, graph: &mut Graph<'_>, _kept: &KeptWeights<'_>) -> Result<Option<usize>> {
        let Some(k) = graph.ops().iter().position(|o| o.name() == "fc3") else { return Ok(None) };
        let Some(layer) = graph.ops()[k].borrowed_layer() else { return Ok(None) };
        let linear = layer.as_linear().expect("a Linear has a linear view");
        let doubled = Reweighted::new(layer, linear.weight().mul_scalar(2.0), linear.bias())?;
        graph.replace_layer(k, Box::new(doubled), &[])?;
        Ok(Some(k))
    }
}

#[test]
fn a_canonizer_of_ones_own_rewrites_the_graph_and_it_is_replayed() {
    let model = Mlp::new();
    let x = input();
    let plain = Explainer::new(&model, Composite::rap());
    let logits = to_vec(&plain.forward(x.clone()).unwrap());
    let canonized = Explainer::new(&model, Composite::rap().with_canonizer(DoubleLast));
    let (graph, out) = canonized.graph(&x).unwrap();
    let replayed = to_vec(graph.value(out).unwrap());
    for (a, b) in logits.iter().zip(&replayed) {
        assert!((2.0 * a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} doubled is not {b}");
    }
    // The explanation's logits stay the model's own.
    let e = canonized.explain(x, Target::Predicted).unwrap();
    assert_eq!(to_vec(&e.logits), logits);
    assert_eq!(canonized.composite().canonizers().len(), 1);
}

/// A linear layer with an exact relevance step of its own, which counts its calls.
struct OwnStep {
    inner: Linear,
    calls: AtomicUsize,
}

impl LinearLayer for OwnStep {
    linear_via!(inner);
    fn structure(&self) -> LinearStructure {
        LinearStructure::Dense
    }
}

impl Relevance for OwnStep {
    fn layer_type(&self) -> LayerType {
        LayerType::Custom("OwnStep".into())
    }
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        Relevance::forward(&self.inner, name, inputs)
    }
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        _output: &Tensor<4>,
        r: Tensor<4>,
        rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // The walk hands the rule and the kept linear view.
        assert!(rule.is_some() && ctx.linear_view().is_some());
        // Uniform over the inputs: Σ R kept per sample.
        let x = &inputs[0];
        let [b, f, _, _] = x.dims();
        let per_sample = r.sum_dim(1).div_scalar(f as f32);
        Ok(vec![per_sample.expand([b, f, 1, 1])])
    }
}

struct WithOwnStep {
    fc: OwnStep,
}

impl Explain for WithOwnStep {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        t.layer("own", &self.fc, x)
    }
}

#[test]
fn a_linear_layer_with_its_own_relevance_step_is_called_by_the_walk() {
    let device = common::device();
    let model =
        WithOwnStep { fc: OwnStep { inner: LinearConfig::new(4, 2).init(&device), calls: AtomicUsize::new(0) } };
    let x = common::normal(&mut common::Rng::new(2), [2, 4], &device);
    let e = Explainer::new(&model, Composite::rap()).explain(x, Target::Classes(vec![0, 1])).unwrap();
    assert_eq!(model.fc.calls.load(Ordering::SeqCst), 1);
    // One-hot start: every sample's relevance is 1/4 everywhere.
    assert!(to_vec(&e.relevance).iter().all(|v| (v - 0.25).abs() < 1e-6), "{:?}", to_vec(&e.relevance));
}
