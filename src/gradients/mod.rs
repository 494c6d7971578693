//! Gradient baselines: gradient (saliency), input × gradient, integrated gradients, guided
//! backprop and SmoothGrad.
//!
//! They are the baselines of the RAP paper's evaluation and share the propagation rules' API:
//! a [`GradientExplainer`] takes the same [`Explain`] model and [`Target`] as an
//! [`Explainer`](crate::Explainer) and returns the same [`Explanation`], so that both kinds of
//! method go through the same metrics ([`crate::metrics`]) and pictures ([`crate::viz`]).
//!
//! ```
//! use burn::nn::{Linear, LinearConfig, Relu};
//! use burn::tensor::{Device, Tensor};
//! use rap_attrib::gradients::{GradientExplainer, GradientMethod, IntegratedGradients};
//! use rap_attrib::{Explain, Node, Result, Target, Tracer};
//!
//! struct Mlp { fc1: Linear, act: Relu, fc2: Linear }
//! impl Explain for Mlp {
//!     fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
//!         let x = t.layer("fc1", &self.fc1, x)?;
//!         let x = t.layer("act", &self.act, x)?;
//!         t.layer("fc2", &self.fc2, x)
//!     }
//! }
//! let device = Device::flex();
//! let model = Mlp { fc1: LinearConfig::new(4, 8).init(&device), act: Relu::new(), fc2: LinearConfig::new(8, 3).init(&device) };
//! let x = Tensor::<2>::from_data([[0.5, 1.0, 0.2, 0.9], [0.1, 0.3, 0.8, 0.4]], &device);
//! let ig = GradientMethod::IntegratedGradients(IntegratedGradients::default().with_steps(64));
//! let out = GradientExplainer::new(&model, ig).explain(x, Target::Predicted)?;
//! assert_eq!(out.relevance.dims(), [2, 4]);
//! # Ok::<(), rap_attrib::AttribError>(())
//! ```
//!
//! # Methods
//!
//! With `f` the target score (the logit of the target class, or `⟨r, logits⟩` for an arbitrary
//! output vector `r` given as [`Target::Relevance`]):
//!
//! - [`GradientMethod::Gradient`]: `∂f/∂x` (Simonyan et al. 2013), signed.
//! - [`GradientMethod::InputTimesGradient`]: `x ⊙ ∂f/∂x`.
//! - [`GradientMethod::IntegratedGradients`]: `(x − x̄) ⊙ Σ_k w_k ∂f/∂x (x̄ + α_k (x − x̄))`
//!   (Sundararajan et al. 2017), with the baseline `x̄` and the quadrature (`α_k`, `w_k`) of
//!   [`IntegratedGradients`]. Completeness: the sum approaches `f(x) − f(x̄)` as steps grow.
//! - [`GradientMethod::GuidedBackprop`]: the gradient with every ReLU's backward replaced by
//!   `∂ ↦ 1[x > 0] · max(∂, 0)` (Springenberg et al. 2015).
//! - [`GradientMethod::SmoothGrad`]: the gradient averaged over noisy copies
//!   `x + N(0, σ²)`, `σ = noise · (max x − min x)` per sample (Smilkov et al. 2017), seeded.
//!
//! Every method takes its gradients by one forward pass and the traced graph's backward walk
//! (the graph's one backward walk, as the rules do): a linear layer's vector–Jacobian product is
//! its exact adjoint ([`LinearLayer::adjoint`](crate::LinearLayer::adjoint): the transposed
//! convolution or matrix product the rules run, on [`crate::kernels`]), ReLU's and a residual
//! sum's are written out, and every other op's is taken by Burn's autodiff on that op alone. The
//! tests check the walk against one whole-model autodiff pass.
//!
//! Batches are first-class: every sample's copies (integration steps, noisy samples) go through
//! the network together, in chunks of at most [`GradientExplainer::with_chunk`] copies.

// Indexing is checked by construction here: indices run over copy lists and noise buffers this module sizes from the checked input shape.
#![allow(clippy::indexing_slicing)]

use crate::composite::InitialRelevance;
use crate::error::{AttribError, Result};
use crate::graph::Step;
use crate::layers::{LayerType, Layout};
use crate::limits::Limits;
use crate::tensor::{all_finite, sample_max, sample_min, to_vec};
use crate::walk::explain::{logits_of, prepare, resolve_target, run_model, trace_model};
use crate::walk::{AttributionMethod, Explain, Explanation, Node, Target};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::ops::Deref;

/// Where integrated gradients starts its path.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum IgBaseline {
    /// All zeros (for ImageNet-normalised inputs: the mean image).
    Zero,
    /// Every element this value.
    Constant(f32),
    /// A tensor shaped like one sample (`[C, H, W]` as `[1, C, H, W]`, or `[F]` as
    /// `[1, F, 1, 1]`) or like the whole batch; refused for token sequences (use `Zero` or
    /// `Constant` there).
    Tensor(Box<Tensor<4>>),
}

/// The quadrature of integrated gradients over `α ∈ [0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quadrature {
    /// Right Riemann sum, `α_k = k/m`, `k = 1..m` (the original paper's choice).
    RiemannRight,
    /// Midpoint rule, `α_k = (k − ½)/m`: error falls as `1/m²` for smooth paths.
    Midpoint,
    /// Trapezoid rule over `m + 1` points `α_k = k/m`, `k = 0..m`.
    Trapezoid,
}

impl Quadrature {
    /// The points `α_k` and weights `w_k` (which sum to 1) for `steps` intervals.
    pub fn nodes(self, steps: usize) -> Vec<(f32, f32)> {
        let m = steps as f32;
        match self {
            Quadrature::RiemannRight => (1..=steps).map(|k| (k as f32 / m, 1.0 / m)).collect(),
            Quadrature::Midpoint => (1..=steps).map(|k| ((k as f32 - 0.5) / m, 1.0 / m)).collect(),
            Quadrature::Trapezoid => (0..=steps)
                .map(|k| {
                    let w = if k == 0 || k == steps { 0.5 / m } else { 1.0 / m };
                    (k as f32 / m, w)
                })
                .collect(),
        }
    }
}

/// Integrated gradients' settings.
#[derive(Debug, Clone)]
pub struct IntegratedGradients {
    /// Number of intervals on the path (default 50).
    pub(crate) steps: usize,
    /// The path's start (default [`IgBaseline::Zero`]).
    pub(crate) baseline: IgBaseline,
    /// The quadrature (default [`Quadrature::RiemannRight`]).
    pub(crate) quadrature: Quadrature,
}

impl Default for IntegratedGradients {
    fn default() -> Self {
        Self { steps: 50, baseline: IgBaseline::Zero, quadrature: Quadrature::RiemannRight }
    }
}

impl IntegratedGradients {
    /// Number of intervals on the path (default 50).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The path's start (default [`IgBaseline::Zero`]).
    pub fn baseline(&self) -> &IgBaseline {
        &self.baseline
    }

    /// The quadrature (default [`Quadrature::RiemannRight`]).
    pub fn quadrature(&self) -> Quadrature {
        self.quadrature
    }
}

impl IntegratedGradients {
    /// Sets the number of steps.
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }
    /// Sets the baseline.
    pub fn with_baseline(mut self, baseline: IgBaseline) -> Self {
        self.baseline = baseline;
        self
    }
    /// Sets the quadrature.
    pub fn with_quadrature(mut self, quadrature: Quadrature) -> Self {
        self.quadrature = quadrature;
        self
    }
}

/// SmoothGrad's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothGrad {
    /// Noise standard deviation as a fraction of each sample's value range (default 0.15).
    pub(crate) noise: f32,
    /// Number of noisy copies per sample (default 25).
    pub(crate) samples: usize,
    /// Seed of the noise (default 0); the same seed gives the same result on every backend.
    pub(crate) seed: u64,
}

impl Default for SmoothGrad {
    fn default() -> Self {
        Self { noise: 0.15, samples: 25, seed: 0 }
    }
}

impl SmoothGrad {
    /// Noise standard deviation as a fraction of each sample's value range (default 0.15).
    pub fn noise(&self) -> f32 {
        self.noise
    }

    /// Number of noisy copies per sample (default 25).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Seed of the noise (default 0); the same seed gives the same result on every backend.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl SmoothGrad {
    /// Sets the noise level.
    pub fn with_noise(mut self, noise: f32) -> Self {
        self.noise = noise;
        self
    }
    /// Sets the number of noisy samples.
    pub fn with_samples(mut self, samples: usize) -> Self {
        self.samples = samples;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// A gradient-based attribution method.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GradientMethod {
    /// `∂f/∂x`.
    Gradient,
    /// `x ⊙ ∂f/∂x`.
    InputTimesGradient,
    /// Integrated gradients.
    IntegratedGradients(IntegratedGradients),
    /// Guided backprop.
    GuidedBackprop,
    /// SmoothGrad (averaged gradients of noisy copies).
    SmoothGrad(SmoothGrad),
}

impl GradientMethod {
    /// A short name (`gradient`, `input-x-gradient`, `integrated-gradients`, `guided-backprop`,
    /// `smoothgrad`).
    pub fn name(&self) -> &'static str {
        match self {
            GradientMethod::Gradient => "gradient",
            GradientMethod::InputTimesGradient => "input-x-gradient",
            GradientMethod::IntegratedGradients(_) => "integrated-gradients",
            GradientMethod::GuidedBackprop => "guided-backprop",
            GradientMethod::SmoothGrad(_) => "smoothgrad",
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            GradientMethod::IntegratedGradients(ig) if ig.steps == 0 || ig.steps > MAX_COPIES => {
                Err(AttribError::InvalidParameter(format!(
                    "integrated gradients: `steps` = {} is not allowed; expected 1..={MAX_COPIES}",
                    ig.steps
                )))
            }
            GradientMethod::SmoothGrad(sg) if sg.samples == 0 || sg.samples > MAX_COPIES => {
                Err(AttribError::InvalidParameter(format!(
                    "SmoothGrad: `samples` = {} is not allowed; expected 1..={MAX_COPIES}",
                    sg.samples
                )))
            }
            GradientMethod::SmoothGrad(sg) if !(sg.noise.is_finite() && sg.noise >= 0.0) => Err(
                AttribError::InvalidParameter(format!("SmoothGrad's noise must be finite and ≥ 0, got {}", sg.noise)),
            ),
            _ => Ok(()),
        }
    }
}

/// The most integration steps or noisy samples per input: 100,000.
pub const MAX_COPIES: usize = 100_000;

/// Explains a model with a gradient method; the counterpart of [`crate::Explainer`].
///
/// Like [`Explainer`](crate::Explainer), it holds the model by a borrow (`&M`) or an owner
/// (`Arc<M>`, `Box<M>`).
pub struct GradientExplainer<P> {
    model: P,
    method: GradientMethod,
    chunk: usize,
    limits: Limits,
}

impl<P> GradientExplainer<P>
where
    P: Deref,
    P::Target: Explain,
{
    /// An explainer for `model` (a borrow or an owner) using `method`.
    pub fn new(model: P, method: GradientMethod) -> Self {
        Self { model, method, chunk: 16, limits: Limits::default() }
    }

    /// The limits this explainer's calls run under ([`Limits`]; default: the process-wide ones).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// At most `chunk` copies (integration steps, noisy samples) per forward/backward pass
    /// (default 16; values below 1 count as 1).
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// The method in use.
    pub fn method(&self) -> &GradientMethod {
        &self.method
    }

    /// Explains a batch (`[B, C, H, W]` or `[B, F]`). The explanation's `initial` is the gradient
    /// seed at the output (one-hot, or the given output vector) and `layers` is empty.
    pub fn explain<const D: usize>(&self, input: Tensor<D>, target: Target) -> Result<Explanation<D>> {
        self.limits.scope(|| self.explain_within_limits(input, target))
    }

    fn explain_within_limits<const D: usize>(&self, input: Tensor<D>, target: Target) -> Result<Explanation<D>> {
        self.method.check()?;
        let (x, layout) = prepare(&input)?;
        let (logits, seed, targets, relevance) = match &self.method {
            // One forward pass on the autodiff device gives the logits and the graph.
            GradientMethod::Gradient | GradientMethod::InputTimesGradient => {
                let (logits, seed, targets, g) = gradient_at_target(&*self.model, x.clone(), layout, target)?;
                let g = if matches!(self.method, GradientMethod::Gradient) { g } else { g * x };
                (logits, seed, targets, g)
            }
            method => {
                let logits = run_model(&*self.model, x.clone(), layout)?;
                let (seed, targets) = resolve_target(&logits, target, InitialRelevance::OneHot)?;
                let relevance = match method {
                    GradientMethod::GuidedBackprop => layer_walk(&*self.model, x, layout, seed.clone(), true)?,
                    GradientMethod::IntegratedGradients(ig) => self.integrated_gradients(x, layout, &seed, ig)?,
                    GradientMethod::SmoothGrad(sg) => self.smoothgrad(x, layout, &seed, sg)?,
                    GradientMethod::Gradient | GradientMethod::InputTimesGradient => {
                        input_gradient_in(&*self.model, x, layout, &seed)?
                    }
                };
                (logits, seed, targets, relevance)
            }
        };
        if !all_finite(&relevance) {
            return Err(AttribError::NonFinite { what: format!("the {} attribution", self.method.name()) });
        }
        Ok(Explanation {
            relevance: layout.release(relevance)?,
            logits,
            targets,
            initial: seed,
            layers: Vec::new(),
            marked: HashMap::new(),
            marked_layouts: HashMap::new(),
        })
    }

    /// Sums `weight_j · ∂f/∂x (input_j)` per sample over copies given by `(sample, weight)` and
    /// a builder of the copies' inputs, `chunk` copies per pass.
    fn accumulate(
        &self,
        x: &Tensor<4>,
        layout: Layout,
        seed: &Tensor<2>,
        copies: &[(usize, f32)],
        build: impl Fn(&[(usize, f32)], usize, &Tensor<1, Int>) -> Result<Tensor<4>>,
    ) -> Result<Tensor<4>> {
        let device = x.device();
        let mut acc = x.zeros_like();
        for (start, chunk) in copies.chunks(self.chunk).enumerate() {
            let idx: Vec<i64> = chunk.iter().map(|(b, _)| *b as i64).collect();
            let n = idx.len();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
            let inputs = build(chunk, start * self.chunk, &idx)?;
            let seeds = seed.clone().select(0, idx.clone());
            let g = input_gradient_in(&*self.model, inputs, layout, &seeds)?;
            let w: Vec<f32> = chunk.iter().map(|(_, w)| *w).collect();
            let w = Tensor::<4>::from_data(TensorData::new(w, [n, 1, 1, 1]), &device);
            acc = acc.select_assign(0, idx, g * w, IndexingUpdateOp::Add);
        }
        Ok(acc)
    }

    fn integrated_gradients(
        &self,
        x: Tensor<4>,
        layout: Layout,
        seed: &Tensor<2>,
        ig: &IntegratedGradients,
    ) -> Result<Tensor<4>> {
        let dims = x.dims();
        let baseline = match &ig.baseline {
            IgBaseline::Zero => x.zeros_like(),
            IgBaseline::Constant(v) => {
                if !v.is_finite() {
                    return Err(AttribError::InvalidParameter(format!("the IG baseline must be finite, got {v}")));
                }
                x.zeros_like().add_scalar(*v)
            }
            IgBaseline::Tensor(_) if matches!(layout, Layout::Sequence | Layout::Volume { .. }) => {
                return Err(AttribError::InvalidParameter(format!(
                    "a tensor IG baseline is shaped [B, C, H, W] (or [B, F, 1, 1]); this input is {}: use IgBaseline::Zero or Constant",
                    layout.describe()
                )));
            }
            IgBaseline::Tensor(t) => {
                let t = (**t).clone();
                let td = t.dims();
                if td[1..] != dims[1..] || (td[0] != 1 && td[0] != dims[0]) {
                    return Err(AttribError::Shape {
                        layer: "integrated gradients baseline".into(),
                        expected: format!("[1 or {}, {}, {}, {}]", dims[0], dims[1], dims[2], dims[3]),
                        got: td.to_vec(),
                    });
                }
                if !all_finite(&t) {
                    return Err(AttribError::NonFinite { what: "the IG baseline".into() });
                }
                if td[0] == 1 { t.repeat_dim(0, dims[0]) } else { t }
            }
        };
        let nodes = ig.quadrature.nodes(ig.steps);
        let copies: Vec<(usize, f32)> = (0..dims[0]).flat_map(|b| nodes.iter().map(move |&(_, w)| (b, w))).collect();
        let per = nodes.len();
        let device = x.device();
        let diff = x - baseline.clone();
        let acc = self.accumulate(&diff, layout, seed, &copies, |chunk, offset, idx| {
            let alphas: Vec<f32> = (0..chunk.len()).map(|j| nodes[(offset + j) % per].0).collect();
            let alphas = Tensor::<4>::from_data(TensorData::new(alphas, [chunk.len(), 1, 1, 1]), &device);
            Ok(baseline.clone().select(0, idx.clone()) + diff.clone().select(0, idx.clone()) * alphas)
        })?;
        Ok(diff * acc)
    }

    fn smoothgrad(&self, x: Tensor<4>, layout: Layout, seed: &Tensor<2>, sg: &SmoothGrad) -> Result<Tensor<4>> {
        let dims = x.dims();
        let per_sample = dims[1] * dims[2] * dims[3];
        crate::limits::check_elements("SmoothGrad's noise", &[sg.samples, per_sample])?;
        let range = sample_max(x.clone()) - sample_min(x.clone());
        let sigmas: Vec<f32> = to_vec(&range).into_iter().map(|r| sg.noise * r).collect();
        let copies: Vec<(usize, f32)> =
            (0..dims[0]).flat_map(|b| (0..sg.samples).map(move |_| (b, 1.0 / sg.samples as f32))).collect();
        let device = x.device();
        // Noise is drawn on the host from one stream per sample that starts at the seed, so a
        // sample gets the same noise alone or in a batch, with any chunk size, on any backend
        // (scaled by its own σ).
        let mut rng = rand::rngs::StdRng::seed_from_u64(sg.seed);
        let unit: Vec<f32> = (0..sg.samples * per_sample).map(|_| -> f32 { StandardNormal.sample(&mut rng) }).collect();
        self.accumulate(&x, layout, seed, &copies, |chunk, offset, idx| {
            let n = chunk.len();
            // Copy j is noisy sample j % samples of input j / samples.
            let part: Vec<f32> = (offset..offset + n)
                .flat_map(|j| {
                    let (sigma, k) = (sigmas[j / sg.samples], j % sg.samples);
                    unit[k * per_sample..(k + 1) * per_sample].iter().map(move |u| u * sigma)
                })
                .collect();
            let part = Tensor::<4>::from_data(TensorData::new(part, [n, dims[1], dims[2], dims[3]]), &device);
            Ok(x.clone().select(0, idx.clone()) + part)
        })
    }
}

impl<P> AttributionMethod for GradientExplainer<P>
where
    P: Deref,
    P::Target: Explain,
{
    fn attribute(&self, input: Tensor<4>, target: Target) -> Result<Explanation<4>> {
        self.explain(input, target)
    }
}

/// `∂⟨seed, f(x)⟩/∂x` by one forward pass and the graph's backward walk (linear layers by
/// their exact adjoint, ReLU and residual sums written out, every other op by autodiff on that
/// op; see the module's docs).
///
/// # Shapes
///
/// - `x`: `[B, C, H, W]` (vectors as `[B, F, 1, 1]`); `seed`: `[B, classes]`
/// - returns: shaped like `x`
pub fn input_gradient<M: Explain + ?Sized>(model: &M, x: Tensor<4>, seed: &Tensor<2>) -> Result<Tensor<4>> {
    input_gradient_in(model, x, Layout::Spatial, seed)
}

/// [`input_gradient`] for an input held in `layout`.
fn input_gradient_in<M: Explain + ?Sized>(
    model: &M,
    x: Tensor<4>,
    layout: Layout,
    seed: &Tensor<2>,
) -> Result<Tensor<4>> {
    let (mut graph, out) = trace_model(model, x, layout)?;
    let [b, k] = logits_of(&graph, out)?.dims();
    if seed.dims() != [b, k] {
        return Err(AttribError::OutputRelevanceShape { got: seed.dims().to_vec(), expected: vec![b, k] });
    }
    walk_back(&mut graph, out, seed.clone(), false)
}

/// The reference the walk is tested against: one forward and one backward pass of the whole
/// model on Burn's autodiff.
#[cfg(test)]
fn autodiff_gradient<M: Explain + ?Sized>(model: &M, x: Tensor<4>, seed: &Tensor<2>) -> Result<Tensor<4>> {
    let layout = Layout::Spatial;
    let xa = x.clone().autodiff().require_grad();
    let (graph, out) = trace_model(model, xa.clone(), layout)?;
    let y = graph.value(out)?.clone();
    let [b, k, h, w] = y.dims();
    if h != 1 || w != 1 {
        return Err(AttribError::OutputShape { got: vec![b, k, h, w] });
    }
    if seed.dims() != [b, k] {
        return Err(AttribError::OutputRelevanceShape { got: seed.dims().to_vec(), expected: vec![b, k] });
    }
    drop(graph);
    let score = (y.reshape([b, k]) * seed.clone()).sum_dim(1).sum();
    let grads = score.backward();
    Ok(xa.grad(&grads).unwrap_or_else(|| x.zeros_like()))
}

/// The logits, the seed and targets resolved from them, and `∂⟨seed, f(x)⟩/∂x`, from one
/// forward pass (the traced graph, no autodiff) and the graph's backward walk ([`walk_back`]).
fn gradient_at_target<M: Explain + ?Sized>(
    model: &M,
    x: Tensor<4>,
    layout: Layout,
    target: Target,
) -> Result<(Tensor<2>, Tensor<2>, Vec<usize>, Tensor<4>)> {
    let (mut graph, out) = trace_model(model, x, layout)?;
    let logits = logits_of(&graph, out)?;
    let (seed, targets) = resolve_target(&logits, target, InitialRelevance::OneHot)?;
    let g = walk_back(&mut graph, out, seed.clone(), false)?;
    Ok((logits, seed, targets, g))
}

/// The traced graph walked backwards by the graph's one backward walk, each op's
/// vector–Jacobian product by autodiff; with `guided`, ReLUs send `1[x > 0] · max(∂, 0)` (guided
/// backprop), otherwise the plain gradient.
fn layer_walk<M: Explain + ?Sized>(
    model: &M,
    x: Tensor<4>,
    layout: Layout,
    seed: Tensor<2>,
    guided: bool,
) -> Result<Tensor<4>> {
    let (mut graph, out) = trace_model(model, x, layout)?;
    logits_of(&graph, out)?;
    walk_back(&mut graph, out, seed, guided)
}

/// The backward walk of [`layer_walk`] on a traced graph whose output the caller has checked
/// ([`logits_of`]); a seed of another shape is an error of the walk. A linear layer's
/// vector–Jacobian product is its exact adjoint
/// ([`LinearLayer::adjoint`](crate::LinearLayer::adjoint): the transposed convolution or matrix
/// product the rules run, on the crate's fast kernels), ReLU's and a residual sum's are written
/// out; every other op's is taken by autodiff on that op alone.
fn walk_back(graph: &mut crate::graph::Graph<'_>, out: Node, seed: Tensor<2>, guided: bool) -> Result<Tensor<4>> {
    let [b, k] = seed.dims();
    let step = |step: Step<'_, '_>| -> Result<Vec<Tensor<4>>> {
        let layer = step.op.layer();
        let g = step.relevance;
        if guided && layer.layer_type() == LayerType::Relu {
            return Ok(step
                .inputs
                .iter()
                .map(|x| g.clone().clamp_min(0.0).mask_fill(x.clone().lower_equal_elem(0.0), 0.0))
                .collect());
        }
        match (layer.layer_type(), layer.as_linear(), step.inputs.as_slice()) {
            (_, Some(linear), [x]) => return Ok(vec![linear.adjoint(g, x.dims())]),
            // ReLU is `clamp_min(x, 0)`: the gradient passes where `x ≥ 0`, as Burn's autodiff
            // of that op gives it.
            (LayerType::Relu, _, [x]) => return Ok(vec![g.mask_fill(x.clone().lower_elem(0.0), 0.0)]),
            (LayerType::Add, _, [_, _]) => return Ok(vec![g.clone(), g]),
            _ => {}
        }
        let tracked: Vec<Tensor<4>> = step.inputs.iter().map(|t| t.clone().autodiff().require_grad()).collect();
        let y = layer.forward_in(step.op.name(), &tracked, &step.layouts)?;
        // Reduced axis by axis: burn 0.22.1's wgpu reduction over one long axis drops
        // elements, and with fusion on it also corrupts this sum's gradient (seen on Mesa).
        let grads = crate::tensor::sample_sum(y * g).sum().backward();
        Ok(tracked.iter().zip(&step.inputs).map(|(t, x)| t.grad(&grads).unwrap_or_else(|| x.zeros_like())).collect())
    };
    graph.backward(out, seed.reshape([b, k, 1, 1]), step, |_, _| {})
}

/// The plain gradient by the same per-layer walk as guided backprop (it must equal
/// [`input_gradient`]; checked in the tests below).
#[cfg(test)]
fn walked_gradient<M: Explain + ?Sized>(model: &M, x: Tensor<4>, seed: Tensor<2>) -> Result<Tensor<4>> {
    layer_walk(model, x, Layout::Spatial, seed, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::GraphBuilder;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
    use burn::nn::{BatchNormConfig, LinearConfig, PaddingConfig2d, Relu};
    use burn::tensor::{Device, Distribution};

    #[test]
    fn the_layer_walk_equals_whole_model_autodiff() {
        // Convolutions, BatchNorm, ReLU, a residual add, a concatenation, both pools, flatten
        // and a linear layer: the per-layer walk against one autodiff pass.
        let device = Device::default();
        let conv = |cin, cout, k, p| {
            Box::new(
                Conv2dConfig::new([cin, cout], [k, k])
                    .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                    .init(&device),
            )
        };
        let mut g = GraphBuilder::new();
        // 16 channels and more: the 3×3 convolutions' adjoints run on `crate::kernels`.
        let a = g.layer("c1", "Conv", conv(3, 16, 3, 1), 0).unwrap();
        let a = g.layer("bn", "BatchNorm", Box::new(BatchNormConfig::new(16).init(&device)), a).unwrap();
        let a = g.layer("r1", "Relu", Box::new(Relu::new()), a).unwrap();
        let b = g.layer("c2", "Conv", conv(16, 16, 1, 0), a).unwrap();
        let c = g.add("add", a, b).unwrap();
        let d = g.layer("c3", "Conv", conv(16, 20, 3, 1), c).unwrap();
        let e = g.concat("cat", vec![c, d]).unwrap();
        let e = g.layer("r2", "Relu", Box::new(Relu::new()), e).unwrap();
        let e = g.layer("max", "MaxPool", Box::new(MaxPool2dConfig::new([2, 2]).init()), e).unwrap();
        let e =
            g.layer("avg", "AvgPool", Box::new(AvgPool2dConfig::new([2, 2]).with_strides([1, 1]).init()), e).unwrap();
        let f = g.flatten("flatten", e).unwrap();
        let y = g.layer("fc", "Linear", Box::new(LinearConfig::new(36 * 3 * 3, 5).init(&device)), f).unwrap();
        let net = g.finish(y).unwrap();
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let seed = Tensor::<2>::random([2, 5], Distribution::Normal(0.0, 1.0), &device);
        let a = crate::tensor::to_vec(&autodiff_gradient(&net, x.clone(), &seed).unwrap());
        let b = crate::tensor::to_vec(&walked_gradient(&net, x.clone(), seed.clone()).unwrap());
        let c = crate::tensor::to_vec(&input_gradient(&net, x, &seed).unwrap());
        assert_eq!(b, c, "the public gradient is the walk");
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        let err = a.iter().zip(&b).fold(0.0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
        assert!(err < 1e-5, "relative error {err}");
        assert!(a.iter().any(|v| *v != 0.0));
    }
}
