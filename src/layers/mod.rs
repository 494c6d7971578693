//! Layers: the [`Relevance`] trait and its implementation for every supported layer type.
//!
//! A layer's [`Relevance`] implementation knows how to run the layer forward on the engine's
//! rank-4 activations and how to send relevance from its output back to its inputs. Layers with
//! weights (Linear, Conv2d, BatchNorm) also expose themselves as a [`LinearLayer`] so that any
//! [`Rule`] can work on them; layers without weights (pooling, ReLU, Add,
//! Concat, Flatten, Dropout) carry their fixed propagation themselves.
//!
//! A new layer type is one file here implementing [`Relevance`] (and, if it is linear in its
//! input, [`LinearLayer`]) plus a `mod` line.

// Indexing is checked by construction here: indices are the two spatial axes of fixed-size `[usize; 2]` arrays.
#![allow(clippy::indexing_slicing)]

mod adaptive_avg_pool2d;
mod add;
mod avg_pool2d;
mod batch_norm;
mod concat;
mod conv2d;
mod dropout;
mod flatten;
mod linear;
mod max_pool2d;
mod relu;

pub use add::Add;
pub use concat::Concat;
pub use conv2d::transpose_as_conv;
pub use flatten::Flatten;

use crate::error::{AttribError, Result};
use crate::rules::{Rule, RuleContext};
use burn::tensor::Tensor;
use std::fmt;
use std::sync::Arc;

/// The kind of a layer, used by composites to pick rules by type and by error messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerType {
    /// Fully connected layer.
    Linear,
    /// 2-D convolution.
    Conv2d,
    /// Batch normalisation (eval mode).
    BatchNorm,
    /// Rectified linear unit.
    Relu,
    /// Dropout (identity at inference).
    Dropout,
    /// Max pooling.
    MaxPool2d,
    /// Average pooling.
    AvgPool2d,
    /// Adaptive average pooling.
    AdaptiveAvgPool2d,
    /// Reshape to `[B, C·H·W]`.
    Flatten,
    /// Residual sum of two branches.
    Add,
    /// Channel concatenation of branches.
    Concat,
    /// A user-defined layer type.
    Custom(String),
}

impl fmt::Display for LayerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerType::Custom(name) => write!(f, "{name}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A layer that is linear (affine) in its input: `y = W ⋆ x + b`.
///
/// Rules work on this view. The weight is always a rank-4 tensor in a layout of the layer's own
/// choosing (Linear: `[out, in, 1, 1]`; Conv2d: `[out, in/groups, kh, kw]`; BatchNorm:
/// `[C, 1, 1, 1]`, the per-channel scale `γ/√(var+ε)`), so that a rule can modify it
/// elementwise (`W⁺`, `W⁻`, `W²`, …) without knowing the layer type.
///
/// # Shapes
///
/// - `x`: the layer input, `[B, C_in, H, W]` (vectors as `[B, F, 1, 1]`)
/// - `forward_with` output: `[B, C_out, H', W']`
/// - `transpose_with(y)`: same shape as `x`
pub trait LinearLayer {
    /// The layer's weight in its rank-4 layout.
    fn weight(&self) -> Tensor<4>;
    /// The layer's bias `[C_out]`, if it has one.
    fn bias(&self) -> Option<Tensor<1>>;
    /// `W ⋆ x + b` with a given (possibly modified) weight and bias.
    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4>;
    /// The adjoint of `x ↦ W ⋆ x` (no bias), evaluated at `y`, for an input of shape `x_shape`.
    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4>;

    /// Prepares several weights of this layer for [`forward_stack`](LinearLayer::forward_stack)
    /// and [`transpose_stack`](LinearLayer::transpose_stack). The default keeps them apart (one
    /// product per weight); Conv2d stacks them along its output channels so that all products
    /// are one convolution.
    fn stack(&self, parts: Vec<Tensor<4>>) -> WeightStack {
        WeightStack::new(parts)
    }

    /// `[W₁ ⋆ x, W₂ ⋆ x, …]` (no bias) for the weights of `stack`, in their order.
    fn forward_stack(&self, x: Tensor<4>, stack: &WeightStack) -> Vec<Tensor<4>> {
        forward_apart(self, x, stack)
    }

    /// `Σₖ Wₖᵀ yₖ`: the adjoints of the weights of `stack` at `ys` (one per weight), summed,
    /// for an input of shape `x_shape`.
    fn transpose_stack(&self, ys: Vec<Tensor<4>>, stack: &WeightStack, x_shape: [usize; 4]) -> Tensor<4> {
        transpose_apart(self, ys, stack, x_shape)
    }

    /// The signed parts `[W⁺, |W⁻|]` of the weight, stacked by [`stack`](LinearLayer::stack).
    ///
    /// The explainer keeps them per layer for as long as it lives (see
    /// [`Explainer::with_weight_cache`](crate::Explainer::with_weight_cache)), so rules that
    /// split the weight by sign pay for the split once per model, not once per call.
    fn signed_weights(&self) -> Arc<WeightStack> {
        let w = self.weight();
        Arc::new(self.stack(vec![w.clone().clamp_min(0.0), w.clamp_max(0.0).neg()]))
    }
}

/// [`LinearLayer::forward_stack`] one product per weight (the default, and a layer's fallback).
pub(crate) fn forward_apart<L: LinearLayer + ?Sized>(layer: &L, x: Tensor<4>, stack: &WeightStack) -> Vec<Tensor<4>> {
    stack.parts().iter().map(|w| layer.forward_with(x.clone(), w, None)).collect()
}

/// [`LinearLayer::transpose_stack`] one adjoint per weight, summed (the default, and a layer's
/// fallback).
pub(crate) fn transpose_apart<L: LinearLayer + ?Sized>(
    layer: &L,
    ys: Vec<Tensor<4>>,
    stack: &WeightStack,
    x_shape: [usize; 4],
) -> Tensor<4> {
    ys.into_iter()
        .zip(stack.parts())
        .map(|(y, w)| layer.transpose_with(y, w, x_shape))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Tensor::zeros(x_shape, &layer.weight().device()))
}

/// Weights of one layer prepared for products in one call (built by [`LinearLayer::stack`]).
///
/// It holds the weights themselves and, where the layer has one, a fused form of them (Conv2d:
/// the weights stacked along the output channels of each group, and for stride-1 convolutions
/// the stacked kernel of the adjoint as a forward convolution).
#[derive(Debug, Clone)]
pub struct WeightStack {
    parts: Vec<Tensor<4>>,
    forward: Option<Tensor<4>>,
    transpose: Option<Tensor<4>>,
}

impl WeightStack {
    /// The weights kept apart: one product per weight.
    pub fn new(parts: Vec<Tensor<4>>) -> Self {
        Self { parts, forward: None, transpose: None }
    }

    /// The weights with a layer's fused forms for the forward products and for the adjoint.
    pub fn fused(parts: Vec<Tensor<4>>, forward: Option<Tensor<4>>, transpose: Option<Tensor<4>>) -> Self {
        Self { parts, forward, transpose }
    }

    /// The weights, in order.
    pub fn parts(&self) -> &[Tensor<4>] {
        &self.parts
    }

    /// The number of weights.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the stack holds no weight.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The layer's fused form for the forward products, if it made one.
    pub fn fused_forward(&self) -> Option<&Tensor<4>> {
        self.forward.as_ref()
    }

    /// The layer's fused form for the adjoint, if it made one.
    pub fn fused_transpose(&self) -> Option<&Tensor<4>> {
        self.transpose.as_ref()
    }
}

/// Relevance propagation through one layer type.
///
/// The engine calls [`forward`](Relevance::forward) while tracing the network and
/// [`relevance`](Relevance::relevance) while walking it backwards.
///
/// # Shapes
///
/// - `inputs`: one rank-4 tensor per layer input (two for Add, several for Concat)
/// - `relevance` returns one tensor per input, each of that input's shape
pub trait Relevance {
    /// The layer's type.
    fn layer_type(&self) -> LayerType;

    /// Runs the layer forward. Shape problems are [`AttribError::Shape`] errors naming `name`.
    fn forward(&self, name: &str, inputs: &[Tensor<4>]) -> Result<Tensor<4>>;

    /// The layer seen as a linear map, if it is one (then rules apply to it).
    fn as_linear(&self) -> Option<&dyn LinearLayer> {
        None
    }

    /// The layer's own forward pass (Burn's `Module::forward` for Burn's layers) on the inputs
    /// [`forward`](Relevance::forward) accepted, if the layer has one to compare with; `None`
    /// otherwise. [`Explainer::check_trace`](crate::Explainer::check_trace) uses it to find the
    /// first layer where a trace parts from the model.
    fn native_forward(&self, inputs: &[Tensor<4>]) -> Option<Tensor<4>> {
        let _ = inputs;
        None
    }

    /// For a normalisation layer (BatchNorm), the `ε` added to its variance; `None` for other
    /// layers. The canonizer that reproduces Zennit's BatchNorm merge needs it
    /// ([`BatchNormMerge::Zennit`](crate::BatchNormMerge::Zennit)).
    fn normalization_epsilon(&self) -> Option<f64> {
        None
    }

    /// Sends relevance `r` (shaped like `output`) back to the inputs.
    ///
    /// `rule` is the composite's rule for this layer; it is `Some` exactly when
    /// [`as_linear`](Relevance::as_linear) is `Some`. The default implementation hands linear
    /// layers to the rule and refuses everything else. The explainer's walk calls this method
    /// for layers without a linear view only: a linear layer of one input goes straight to its
    /// rule, seen through the explainer's weight cache.
    fn relevance(
        &self,
        inputs: &[Tensor<4>],
        output: &Tensor<4>,
        r: Tensor<4>,
        rule: Option<&dyn Rule>,
        ctx: &RuleContext,
    ) -> Result<Vec<Tensor<4>>> {
        let _ = output;
        match (self.as_linear(), rule) {
            (Some(linear), Some(rule)) => {
                let [x] = inputs_n::<1>(ctx.name, inputs)?;
                Ok(vec![rule.relevance(linear, x, r, ctx)?])
            }
            _ => Err(AttribError::UnsupportedLayer {
                layer: ctx.name.to_string(),
                layer_type: self.layer_type().to_string(),
                reason: "the layer implements no relevance propagation".into(),
            }),
        }
    }
}

/// The layer's inputs as an array of exactly `N`, or the error that names the layer.
pub(crate) fn inputs_n<'a, const N: usize>(name: &str, inputs: &'a [Tensor<4>]) -> Result<&'a [Tensor<4>; N]> {
    <&[Tensor<4>; N]>::try_from(inputs).map_err(|_| AttribError::Shape {
        layer: name.to_string(),
        expected: format!("{N} input tensor(s)"),
        got: vec![inputs.len()],
    })
}

/// A sliding window's geometry along both axes (kernel, stride, padding, dilation), as a layer
/// holds it.
pub(crate) struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl Window {
    /// Checks the geometry against the input `dims` and the budget, before any work: every size
    /// at least 1, the window fits the padded input, and neither the padded input nor the output
    /// (`out_channels` channels) exceeds [`crate::limits`]. Returns the output's `[H', W']`.
    pub(crate) fn check(&self, name: &str, dims: [usize; 4], out_channels: usize) -> Result<[usize; 2]> {
        let [b, c, h, w] = dims;
        let (mut out, mut padded_dims) = ([0usize; 2], [0usize; 2]);
        for (d, len) in [h, w].into_iter().enumerate() {
            let (k, s, p, dil) = (self.kernel[d], self.stride[d], self.padding[d], self.dilation[d]);
            if k == 0 || s == 0 || dil == 0 {
                return Err(AttribError::UnsupportedLayer {
                    layer: name.to_string(),
                    layer_type: "window".into(),
                    reason: format!(
                        "kernel {:?}, stride {:?} and dilation {:?} must be at least 1",
                        self.kernel, self.stride, self.dilation
                    ),
                });
            }
            let padded = len.saturating_add(p.saturating_mul(2));
            let span = dil.saturating_mul(k - 1).saturating_add(1);
            if padded < span {
                return Err(shape_error(
                    name,
                    format!(
                        "[B, C, H, W] with H, W large enough for the {:?} window (dilation {:?})",
                        self.kernel, self.dilation
                    ),
                    dims,
                ));
            }
            let room = padded - span;
            out[d] = if self.ceil_mode { room.div_ceil(s) + 1 } else { room / s + 1 };
            padded_dims[d] = padded;
        }
        let [ph, pw] = padded_dims;
        crate::limits::check_elements(&format!("layer `{name}`: the padded input"), &[b, c, ph, pw])?;
        crate::limits::check_elements(&format!("layer `{name}`: the output"), &[b, out_channels, out[0], out[1]])?;
        Ok(out)
    }
}

/// Shape error helper.
pub(crate) fn shape_error(name: &str, expected: impl Into<String>, got: [usize; 4]) -> AttribError {
    AttribError::Shape { layer: name.to_string(), expected: expected.into(), got: got.to_vec() }
}

/// The z-rule for a layer without weights: `R_in = x ⊙ Jᵀ (R ⊘ Z(x))`, where `Jᵀ` is the
/// layer's adjoint (for the positively homogeneous pooling layers) and the division is made
/// safe as `sharing` says (the reference's safe divide or Zennit's Norm stabiliser).
pub(crate) fn z_rule_pool(
    x: &Tensor<4>,
    z: &Tensor<4>,
    r: Tensor<4>,
    sharing: crate::rules::Sharing,
    adjoint: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let s = sharing.divide(r, z.clone());
    x.clone() * adjoint(s)
}
