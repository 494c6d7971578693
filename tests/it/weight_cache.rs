//! The explainer's weight cache: signed weights are made once per layer and reused across calls,
//! and the results are the same with the cache, without it, and from a fresh explainer.

use crate::common;

use rap_attrib::burn::nn::conv::{Conv2d, Conv2dConfig};
use rap_attrib::burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::layers::{LayerType, LinearLayer, LinearStructure, Relevance, WeightStack};
use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A Linear layer that counts how often its signed weights are made.
struct Counted {
    inner: Linear,
    signed: AtomicUsize,
}

impl LinearLayer for Counted {
    linear_via!(inner);
    fn signed_weights(&self) -> Arc<WeightStack> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        let w = self.weight();
        Arc::new(self.stack(vec![w.clone().clamp_min(0.0), w.clamp_max(0.0).neg()]))
    }
    fn structure(&self) -> LinearStructure {
        LinearStructure::Dense
    }
}

impl Relevance for Counted {
    fn layer_type(&self) -> LayerType {
        LayerType::Linear
    }
    fn weights_key(&self) -> Option<u64> {
        self.inner.weights_key()
    }
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        Relevance::forward(&self.inner, name, inputs)
    }
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}

/// conv → BatchNorm → ReLU → conv (stride 2) → ReLU → flatten → counted Linear.
struct Net {
    conv1: Conv2d,
    bn: BatchNorm,
    relu: Relu,
    conv2: Conv2d,
    fc: Counted,
}

impl Net {
    fn new(device: &Device) -> Self {
        Net {
            conv1: Conv2dConfig::new([3, 6], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device),
            bn: BatchNormConfig::new(6).init(device),
            relu: Relu::new(),
            conv2: Conv2dConfig::new([6, 4], [3, 3]).with_stride([2, 2]).init(device),
            fc: Counted { inner: LinearConfig::new(4 * 3 * 3, 5).init(device), signed: AtomicUsize::new(0) },
        }
    }
}

impl Explain for Net {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let x = t.layer("conv1", &self.conv1, x)?;
        let x = t.layer("bn", &self.bn, x)?;
        let x = t.layer("relu1", &self.relu, x)?;
        let x = t.layer("conv2", &self.conv2, x)?;
        let x = t.layer("relu2", &self.relu, x)?;
        let x = t.flatten("flatten", x)?;
        t.layer("fc", &self.fc, x)
    }
}

fn max_diff<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar::<f32>()
}

fn presets() -> Vec<(&'static str, Composite)> {
    vec![
        ("rap", Composite::rap()),
        ("lrp-a2b1", Composite::lrp_alpha_beta(2.0, 1.0).unwrap()),
        ("lrp-a1b0", Composite::lrp_alpha_beta(1.0, 0.0).unwrap()),
        ("epsilon-plus (BatchNorm merged)", Composite::zennit_epsilon_plus()),
    ]
}

#[test]
fn signed_weights_are_made_once_per_explainer_and_reused_across_calls() {
    let device = common::device();
    let net = Net::new(&device);
    let x = common::normal(&mut common::Rng::new(3), [2, 3, 8, 8], &device);
    let explainer = Explainer::new(&net, Composite::rap());
    for _ in 0..3 {
        explainer.explain(x.clone(), Target::Predicted).unwrap();
    }
    assert_eq!(net.fc.signed.load(Ordering::SeqCst), 1, "kept after the first call");
    explainer.clear_weight_cache();
    explainer.explain(x.clone(), Target::Predicted).unwrap();
    assert_eq!(net.fc.signed.load(Ordering::SeqCst), 2, "made again after clearing");

    let uncached = Explainer::new(&net, Composite::rap()).with_weight_cache(false);
    for _ in 0..3 {
        uncached.explain(x.clone(), Target::Predicted).unwrap();
    }
    assert_eq!(net.fc.signed.load(Ordering::SeqCst), 5, "made on every call without the cache");
}

#[test]
fn kept_weights_give_the_numbers_of_a_fresh_explainer() {
    let device = common::device();
    let net = Net::new(&device);
    let a = common::normal(&mut common::Rng::new(4), [2, 3, 8, 8], &device);
    let b = common::normal(&mut common::Rng::new(5), [3, 3, 8, 8], &device);
    for (name, composite) in presets() {
        let kept = Explainer::new(&net, composite.clone());
        // Warm the cache on another input (and batch size) first.
        kept.explain(b.clone(), Target::Predicted).unwrap();
        let warm = kept.explain(a.clone(), Target::Predicted).unwrap().relevance;
        let fresh = Explainer::new(&net, composite.clone()).explain(a.clone(), Target::Predicted).unwrap().relevance;
        let off = Explainer::new(&net, composite).with_weight_cache(false);
        let off = off.explain(a.clone(), Target::Predicted).unwrap().relevance;
        let scale = fresh.clone().abs().max().into_scalar::<f32>().max(1e-12);
        assert_eq!(max_diff(&warm, &fresh), 0.0, "{name}: kept weights change the result");
        assert_eq!(max_diff(&off, &fresh), 0.0, "{name}: the cache switch changes the result");
        assert!(scale > 1e-6, "{name}: the relevance is not all zero");
    }
}

#[test]
fn an_explainer_with_kept_weights_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let device = common::device();
    let net = Net::new(&device);
    let explainer = Explainer::new(&net, Composite::rap());
    shareable(&explainer);
    let x = common::normal(&mut common::Rng::new(6), [1, 3, 8, 8], &device);
    let want = explainer.explain(x.clone(), Target::Predicted).unwrap().relevance;
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..2).map(|_| s.spawn(|| explainer.explain(x.clone(), Target::Predicted).unwrap().relevance)).collect();
        for h in handles {
            assert_eq!(max_diff(&h.join().unwrap(), &want), 0.0);
        }
    });
}

/// A layer whose `signed_weights` breaks the contract (one weight instead of two).
struct Broken(Linear);

impl LinearLayer for Broken {
    linear_via!(0);
    fn signed_weights(&self) -> Arc<WeightStack> {
        Arc::new(WeightStack::new(vec![self.weight()]))
    }
}

impl Relevance for Broken {
    fn layer_type(&self) -> LayerType {
        LayerType::Linear
    }
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        Relevance::forward(&self.0, name, inputs)
    }
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}

struct BrokenNet(Broken);

impl Explain for BrokenNet {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        t.layer("odd", &self.0, x)
    }
}

#[test]
fn a_layer_whose_signed_weights_are_not_a_pair_is_an_error_naming_it() {
    let device = common::device();
    let net = BrokenNet(Broken(LinearConfig::new(4, 3).init(&device)));
    let x = Tensor::<2>::from_data([[0.5, -1.0, 0.2, 0.9]], &device);
    let zplus = Composite::new().with(rap_attrib::Selector::Any, rap_attrib::rules::ZPlus::default());
    for composite in [Composite::rap(), Composite::lrp_alpha_beta(2.0, 1.0).unwrap(), zplus] {
        let err = Explainer::new(&net, composite).explain(x.clone(), Target::Predicted).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("odd") && text.contains("signed_weights"), "{text}");
    }
}

/// A linear layer of the user's whose weights change behind `&self` (interior mutability), with
/// no weights key: the explainer must prepare it on every call.
struct Mutable {
    inner: std::sync::RwLock<Linear>,
}

impl Mutable {
    fn now(&self) -> Linear {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl LinearLayer for Mutable {
    fn weight(&self) -> Tensor<4> {
        LinearLayer::weight(&self.now())
    }
    fn bias(&self) -> Option<Tensor<1>> {
        LinearLayer::bias(&self.now())
    }
    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        self.now().forward_with(x, weight, bias)
    }
    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        self.now().transpose_with(y, weight, x_shape)
    }
    fn structure(&self) -> LinearStructure {
        LinearStructure::Dense
    }
}

impl Relevance for Mutable {
    fn layer_type(&self) -> LayerType {
        LayerType::Linear
    }
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>> {
        Relevance::forward(&self.now(), name, inputs)
    }
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        Some(self)
    }
}

/// Two layers behind interior mutability: the user's own (no weights key) and Burn's Linear in a
/// lock, traced as an owned copy (its key is its parameters' ids).
struct Changing {
    fc1: Mutable,
    relu: Relu,
    fc2: std::sync::Mutex<Linear>,
}

impl Explain for Changing {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let x = t.layer("fc1", &self.fc1, x)?;
        let x = t.layer("relu", &self.relu, x)?;
        let fc2 = self.fc2.lock().unwrap_or_else(|e| e.into_inner()).clone();
        t.layer_owned("fc2", Box::new(fc2), &[x])
    }
}

#[test]
fn kept_weights_never_go_stale_behind_interior_mutability() {
    let device = common::device();
    let mut rng = common::Rng::new(21);
    let x = common::tensor2((0..12).map(|_| rng.normal() as f32).collect(), [2, 6], &device);
    let mut linear = |i, o| common::seeded(LinearConfig::new(i, o).init(&device), &mut rng);
    let net = Changing {
        fc1: Mutable { inner: std::sync::RwLock::new(linear(6, 8)) },
        relu: Relu::new(),
        fc2: std::sync::Mutex::new(linear(8, 3)),
    };
    for (name, composite) in presets() {
        let kept = Explainer::new(&net, composite.clone());
        let before = kept.explain(x.clone(), Target::Classes(vec![0, 1])).unwrap().relevance;
        // Both layers change behind `&net`, between two calls of the same explainer.
        *net.fc1.inner.write().unwrap() = linear(6, 8);
        *net.fc2.lock().unwrap() = linear(8, 3);
        let after = kept.explain(x.clone(), Target::Classes(vec![0, 1])).unwrap().relevance;
        let fresh = Explainer::new(&net, composite).explain(x.clone(), Target::Classes(vec![0, 1])).unwrap().relevance;
        let scale = fresh.clone().abs().max().into_scalar::<f32>();
        assert!(scale > 1e-6, "{name}: the relevance is not all zero");
        assert!(max_diff(&before, &fresh) > 1e-6 * scale, "{name}: the weights did change");
        assert_eq!(max_diff(&after, &fresh), 0.0, "{name}: a kept weight went stale");
    }
}

#[test]
fn an_explainer_can_own_its_model_and_move_into_a_thread() {
    fn owned<T: Send + Sync + 'static>(_: &T) {}
    let device = common::device();
    let net = Arc::new(Net::new(&device));
    let x = common::normal(&mut common::Rng::new(7), [1, 3, 8, 8], &device);
    let want = Explainer::new(&*net, Composite::rap()).explain(x.clone(), Target::Predicted).unwrap().relevance;
    let explainer = Explainer::new(Arc::clone(&net), Composite::rap());
    owned(&explainer);
    let got = std::thread::spawn(move || {
        // Twice: the second call runs on the kept weights.
        explainer.explain(x.clone(), Target::Predicted).unwrap();
        explainer.explain(x, Target::Predicted).unwrap().relevance
    })
    .join()
    .unwrap();
    assert_eq!(max_diff(&got, &want), 0.0);
}

#[test]
fn limits_are_per_explainer() {
    let device = common::device();
    let net = Net::new(&device);
    let x = common::normal(&mut common::Rng::new(8), [1, 3, 8, 8], &device);
    let tight = Explainer::new(&net, Composite::rap())
        .with_limits(rap_attrib::limits::Limits::default().with_max_tensor_elements(100));
    let err = tight.explain(x.clone(), Target::Predicted).unwrap_err();
    assert!(matches!(err, rap_attrib::AttribError::TooLarge { limit: 100, .. }), "{err}");
    // Another explainer, and the process-wide budget, are untouched.
    Explainer::new(&net, Composite::rap()).explain(x.clone(), Target::Predicted).unwrap();
    assert_eq!(rap_attrib::limits::max_tensor_elements(), rap_attrib::limits::DEFAULT_MAX_TENSOR_ELEMENTS);
}

#[test]
fn memory_per_call_is_bounded_before_the_work_and_per_explainer() {
    use rap_attrib::AttribError;
    use rap_attrib::limits::Limits;
    let device = common::device();
    let net = Net::new(&device);
    let x = common::normal(&mut common::Rng::new(9), [1, 3, 8, 8], &device);
    // The call's account, in f32 elements: the input (192); the outputs of conv1, bn, relu1
    // (384 each), conv2, relu2, flatten (36 each) and fc (5); the walk's relevance, as much as
    // every recorded value (1457); the signed weights, twice the weights of conv1 (162), bn (6),
    // conv2 (216) and fc (180).
    // Then, checked but not kept, the walk's per-layer workspace: four of the largest
    // activation (4 · 384).
    let elements = 192 + (3 * 384 + 3 * 36 + 5) + 1457 + 2 * (162 + 6 + 216 + 180);
    let bytes = 4 * elements as u64;
    let peak = bytes + 4 * 4 * 384;
    let under =
        |bound: u64| Explainer::new(&net, Composite::rap()).with_limits(Limits::default().with_max_call_bytes(bound));
    under(peak).explain(x.clone(), Target::Predicted).unwrap();
    match under(peak - 1).explain(x.clone(), Target::Predicted).unwrap_err() {
        AttribError::MemoryBudget { what, bytes: b, limit } => {
            assert!(what.contains("workspace"), "{what}");
            assert_eq!((b, limit), (peak, peak - 1));
        }
        other => panic!("expected MemoryBudget, got {other}"),
    }
    match under(bytes - 1).explain(x.clone(), Target::Predicted).unwrap_err() {
        AttribError::MemoryBudget { what, bytes: b, limit } => {
            assert!(what.contains("signed weights"), "{what}");
            assert_eq!((b, limit), (bytes, bytes - 1));
        }
        other => panic!("expected MemoryBudget, got {other}"),
    }
    // A bound the first convolution's output does not fit: refused before it is computed.
    match under(4 * 192 + 4 * 100).explain(x.clone(), Target::Predicted).unwrap_err() {
        AttribError::MemoryBudget { what, .. } => assert!(what.contains("layer `conv1`"), "{what}"),
        other => panic!("expected MemoryBudget, got {other}"),
    }
    // Other explainers follow the process-wide bound, ¾ of the available memory by default.
    Explainer::new(&net, Composite::rap()).explain(x, Target::Predicted).unwrap();
    assert!(rap_attrib::limits::max_call_bytes() >= 1 << 20);
    assert_eq!(rap_attrib::limits::call_bytes(), None, "no call is running here");
}

#[cfg(feature = "ndarray")]
#[test]
fn an_input_on_another_device_is_a_typed_error() {
    let device = Device::flex();
    let net = Net::new(&device);
    let other = rap_attrib::device_by_name("ndarray").unwrap();
    let x = common::normal(&mut common::Rng::new(10), [1, 3, 8, 8], &other);
    let err = Explainer::new(&net, Composite::rap()).explain(x, Target::Predicted).unwrap_err();
    match err {
        rap_attrib::AttribError::DeviceMismatch { layer, .. } => assert_eq!(layer, "conv1"),
        other => panic!("expected DeviceMismatch, got {other}"),
    }
}

/// A model that builds a fresh layer (new parameter ids, other weights) on every call.
struct FreshEveryCall {
    calls: AtomicUsize,
}

impl Explain for FreshEveryCall {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let device = common::device();
        let k = self.calls.fetch_add(1, Ordering::SeqCst) as f32;
        // Weights that differ from call to call in pattern, not only in scale.
        let w: Vec<f32> =
            (0..12).map(|i| if i % (2 + k as usize) == 0 { -1.0 - k } else { 1.0 + 0.5 * i as f32 }).collect();
        let w = Tensor::<1>::from_floats(w.as_slice(), &device).reshape([4, 3]);
        let fc: Linear = LinearConfig::new(4, 3).with_bias(false).init(&device);
        let fc = Linear { weight: rap_attrib::burn::module::Param::from_tensor(w), ..fc };
        t.layer_owned("fc", Box::new(fc), &[x])
    }
}

#[test]
fn layers_built_on_every_call_are_prepared_anew() {
    let device = common::device();
    let x = Tensor::<2>::from_data([[0.5, -1.0, 0.2, 0.9]], &device);
    let composite = Composite::lrp_alpha_beta(2.0, 1.0).unwrap();
    // Two calls of one explainer: the second sees the second call's layer.
    let model = FreshEveryCall { calls: AtomicUsize::new(0) };
    let kept = Explainer::new(&model, composite.clone());
    let first = kept.explain(x.clone(), Target::Classes(vec![0])).unwrap().relevance;
    let second = kept.explain(x.clone(), Target::Classes(vec![0])).unwrap().relevance;
    // A fresh explainer on a model at the same point (its next layer is the second one).
    let again = FreshEveryCall { calls: AtomicUsize::new(1) };
    let fresh = Explainer::new(&again, composite).explain(x, Target::Classes(vec![0])).unwrap().relevance;
    assert!(max_diff(&first, &fresh) > 1e-6, "the two calls' layers differ");
    assert_eq!(max_diff(&second, &fresh), 0.0, "the second call used the first call's weights");
}
