//! # rap-attrib
//!
//! Explanations for [Burn](https://burn.dev) networks by relevance propagation: Relative
//! Attributing Propagation (RAP; Nam, Gur, Choi, Wolf, Lee, AAAI 2020) and the layer-wise
//! relevance propagation family (LRP-0, LRP-ε, LRP-αβ, Z^β, Z⁺, LRP-γ, Flat). Presets reproduce
//! the RAP authors' code ([`Composite::rap`], [`Composite::lrp_alpha_beta`]) and Zennit 0.5.1's
//! composites ([`Composite::zennit_epsilon_plus_flat`] and its siblings), each to its golden
//! numbers.
//!
//! ```
//! use burn::nn::{Linear, LinearConfig, Relu};
//! use burn::tensor::{Device, Tensor};
//! use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};
//!
//! // Any model: implement `Explain` by running its layers through the tracer.
//! struct Mlp { fc1: Linear, act: Relu, fc2: Linear }
//! impl Explain for Mlp {
//!     fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
//!         let x = t.layer("fc1", &self.fc1, x)?;
//!         let x = t.layer("act", &self.act, x)?;
//!         t.layer("fc2", &self.fc2, x)
//!     }
//! }
//!
//! let device = Device::default();
//! let model = Mlp {
//!     fc1: LinearConfig::new(4, 16).init(&device),
//!     act: Relu::new(),
//!     fc2: LinearConfig::new(16, 3).init(&device),
//! };
//! let x = Tensor::<2>::from_data([[0.5, 1.0, 0.2, 0.9]], &device);
//! let explanation = Explainer::new(&model, Composite::rap())
//!     .record_layers(true)
//!     .explain(x, Target::Predicted)?;
//! assert_eq!(explanation.relevance.dims(), [1, 4]);
//! let report = explanation.conservation();
//! assert_eq!(report.input_sums.len(), 1);
//! # Ok::<(), rap_attrib::AttribError>(())
//! ```
//!
//! The concepts, one module each: [`layers`] (the [`Relevance`] trait per layer type),
//! [`rules`] (the [`Rule`] trait and the rules), [`composite`] (which rule each layer gets),
//! [`walk`] (recording the forward pass and walking it backwards), [`canonizer`] (BatchNorm
//! merging) and [`spec`] (networks built from a JSON description, as the golden cases use).
//! Around them: [`gradients`] (the gradient baselines, by the graph's backward walk), [`kernels`]
//! (stride-1 convolutions on the CPU faster than Burn's), [`metrics`]
//! (outside–inside ratio, segmentation, pointing game, region perturbation), [`evaluation`]
//! (ranking methods on photos with ground truth), [`zoo`], [`imaging`] and [`viz`].

#![warn(missing_docs)]
// No panics on user input: library code has no `unwrap`, `expect`, `panic!` or unchecked
// indexing. Modules whose indices come from the engine's own bookkeeping (shapes checked at the
// boundary, node indices it made) allow `indexing_slicing` at their top, each with its reason.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod backend;
pub mod base;
mod cache;
pub mod canonizer;
pub mod composite;
pub mod error;
#[cfg(feature = "eval")]
pub mod evaluation;
#[cfg(feature = "gradients")]
pub mod gradients;
pub mod graph;
#[cfg(feature = "images")]
pub mod imaging;
pub mod kernels;
pub mod kit;
pub mod layers;
pub mod limits;
#[cfg(feature = "eval")]
pub mod metrics;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod rules;
pub mod spec;
pub(crate) mod tensor;
#[cfg(feature = "images")]
pub mod viz;
pub mod walk;
#[cfg(feature = "zoo")]
pub mod zoo;

pub use backend::{device_by_name, float64};
pub use canonizer::Canonizer;
pub use composite::{BatchNormMerge, Composite, InitialRelevance, Selector};
pub use error::{AttribError, Result};
pub use graph::Graph;
pub use layers::{LayerType, Layout, LinearLayer, LinearStructure, Relevance};
pub use rules::{Rule, RuleContext};
pub use walk::{
    AttributionMethod, Conservation, Explain, Explainer, Explanation, LayerRelevance, Node, Target, Tracer,
};

/// Re-export of the pinned Burn release, so users build models against the same version.
pub use burn;
/// Burn's ONNX parser (the `onnx` feature), re-exported for reading a file's protobuf directly
/// (`onnx_ir::ModelProto`, its initializers) in the version the loader uses.
#[cfg(feature = "onnx")]
pub use onnx_ir;

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide's code blocks (`docs/guide.md`), compiled and run as doctests.
#[doc = include_str!("../docs/guide.md")]
#[cfg(doctest)]
pub struct GuideDoctests;
