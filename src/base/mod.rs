//! The small core that layers and rules share, and nothing else: the layer-type names
//! ([`LayerType`]), the view a rule needs of a linear op ([`LinearLayer`], [`WeightStack`],
//! [`LinearStructure`]), the rule traits with their context ([`Rule`] for linear ops,
//! [`ShareRule`] for the ops without weights, [`RuleContext`], [`Sharing`], [`ProductRule`],
//! [`Stabilizer`]).
//!
//! [`layers`](crate::layers) and [`rules`](crate::rules) both depend on this module and never on
//! each other: a layer hands its linear view to whatever rule the composite maps to it, and a rule
//! works on that view without knowing the layer type. Everything here is re-exported where users
//! look for it (`rap_attrib::layers`, `rap_attrib::rules`).

use crate::error::{AttribError, Result};
use crate::tensor::{safe_div, stabilize};
use burn::tensor::Tensor;
use std::fmt::{self, Debug};

use std::sync::Arc;

/// The kind of a layer, used by composites to pick rules by type and by error messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerType {
    /// Fully connected layer.
    Linear,
    /// 1-D convolution (over the tokens of a sequence).
    Conv1d,
    /// 2-D convolution.
    Conv2d,
    /// 3-D convolution.
    Conv3d,
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
    /// Adaptive average pooling over a volume.
    AdaptiveAvgPool3d,
    /// Reshape to `[B, C·H·W]`.
    Flatten,
    /// Residual sum of two branches.
    Add,
    /// Channel concatenation of branches.
    Concat,
    /// ReLU6, `min(max(x, 0), 6)` (ONNX `Clip(0, 6)`).
    Relu6,
    /// Clamping to `[min, max]` (ONNX `Clip`).
    Clamp,
    /// The logistic sigmoid.
    Sigmoid,
    /// The hyperbolic tangent.
    Tanh,
    /// GELU (exact or tanh-approximated).
    Gelu,
    /// SiLU (swish), `x·σ(x)`.
    SiLU,
    /// Hard sigmoid, `clamp(αx + β, 0, 1)`.
    HardSigmoid,
    /// Hard swish, `x·relu6(x + 3)/6`.
    HardSwish,
    /// Leaky ReLU.
    LeakyRelu,
    /// Softplus.
    Softplus,
    /// The element-wise product of two activations (an SE or SiLU gate, scores × values).
    Mul,
    /// Scaling by a constant (a layer scale, `x / c`).
    Scale,
    /// A permutation of axes (channels last and back).
    Permute,
    /// Layer normalisation over the feature axis.
    LayerNorm,
    /// Root-mean-square normalisation over the feature axis.
    RmsNorm,
    /// Group normalisation over groups of channels.
    GroupNorm,
    /// An embedding table (token ids to vectors).
    Embedding,
    /// Multi-head self-attention.
    Attention,
    /// A structural op on a token sequence (patches to tokens, a class token, a token picked).
    Tokens,
    /// The sum with a constant (a position embedding).
    AddConstant,
    /// A structural op on the channel axis (a channel range, ShuffleNet's channel shuffle).
    Channels,
    /// A user-defined layer type.
    Custom(String),
}

impl LayerType {
    /// Whether the layer is an element-wise activation (ReLU, ReLU6, Clamp, Sigmoid, Tanh, GELU,
    /// SiLU, HardSigmoid, HardSwish, LeakyReLU, Softplus): the layers the identity rule passes
    /// relevance through unchanged.
    pub fn is_activation(&self) -> bool {
        matches!(
            self,
            LayerType::Relu
                | LayerType::Relu6
                | LayerType::Clamp
                | LayerType::Sigmoid
                | LayerType::Tanh
                | LayerType::Gelu
                | LayerType::SiLU
                | LayerType::HardSigmoid
                | LayerType::HardSwish
                | LayerType::LeakyRelu
                | LayerType::Softplus
        )
    }

    /// Whether the layer is a convolution (Conv1d, Conv2d, Conv3d): the layers the presets give
    /// their convolution rules, as Zennit's `Convolution` type group does.
    pub fn is_convolution(&self) -> bool {
        matches!(self, LayerType::Conv1d | LayerType::Conv2d | LayerType::Conv3d)
    }
}

impl fmt::Display for LayerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerType::Custom(name) => write!(f, "{name}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// How a value of some logical rank is held as the engine's rank-4 tensor.
///
/// The engine carries every activation as a rank-4 tensor whose axis 1 is the **feature axis**
/// (channels of an image, features of a vector, the embedding of a token) and whose axes 2 and 3
/// are positions. Ops that mix features at each position (Linear, BatchNorm's per-channel scale,
/// the rules' weight products) therefore work the same on every rank, and a rule's per-sample
/// sums (RAP's shift, conservation) stay per sample. The graph records each value's layout
/// ([`Graph::layout`](crate::Graph::layout)); the explainer maps an input of rank 2 to 5 to it
/// and the input relevance back.
///
/// | layout | logical shape | held as |
/// |---|---|---|
/// | [`Features`](Layout::Features) | `[B, F]` | `[B, F, 1, 1]` |
/// | [`Sequence`](Layout::Sequence) | `[B, T, D]` (tokens, features last) | `[B, D, T, 1]` |
/// | [`Spatial`](Layout::Spatial) | `[B, C, H, W]` | `[B, C, H, W]` |
/// | [`ChannelsLast`](Layout::ChannelsLast) | `[B, H, W, C]` | `[B, C, H, W]` |
/// | [`Volume`](Layout::Volume) | `[B, C, D, H, W]` | `[B, C·D, H, W]` |
///
/// A volume keeps its elements in their own order (a reshape, no copy), with the depth folded
/// into axis 1: the ops that read a volume (Burn's `Conv3d`, `AdaptiveAvgPool3d`, BatchNorm per
/// channel) unfold it with the channel count they know, and the layout records the depth. A
/// channels-last map (ConvNeXt's `x.permute(0, 2, 3, 1)` before its LayerNorm and Linear layers)
/// is held like the map itself: its last axis is the feature axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// A feature vector per sample, `[B, F]`.
    Features,
    /// A sequence of tokens per sample, `[B, T, D]`.
    Sequence,
    /// A feature map per sample, `[B, C, H, W]`.
    Spatial,
    /// A feature map with its channels last, `[B, H, W, C]` (held as `[B, C, H, W]`).
    ChannelsLast,
    /// A volume per sample, `[B, C, D, H, W]` (a video clip, a scan), held as `[B, C·D, H, W]`.
    Volume {
        /// The depth `D` (axis 2 of the logical shape).
        depth: usize,
    },
}

impl Layout {
    /// The layout of an input of this logical shape: rank 2, 3, 4 or 5 (a volume takes its depth
    /// from axis 2); another rank is [`AttribError::InputRank`].
    pub fn of_shape(dims: &[usize]) -> Result<Self> {
        match dims {
            [_, _] => Ok(Layout::Features),
            [_, _, _] => Ok(Layout::Sequence),
            [_, _, _, _] => Ok(Layout::Spatial),
            [_, _, depth, _, _] => Ok(Layout::Volume { depth: *depth }),
            _ => Err(AttribError::InputRank { got: dims.len() }),
        }
    }

    /// The logical rank (2 to 5).
    pub fn rank(self) -> usize {
        match self {
            Layout::Features => 2,
            Layout::Sequence => 3,
            Layout::Spatial | Layout::ChannelsLast => 4,
            Layout::Volume { .. } => 5,
        }
    }

    /// The logical shape of a value held as `held` (`[B, F]`, `[B, T, D]`, `[B, C, H, W]` or
    /// `[B, C, D, H, W]`).
    pub fn logical_dims(self, held: [usize; 4]) -> Vec<usize> {
        let [b, c, h, w] = held;
        match self {
            Layout::Features => vec![b, c * h * w],
            Layout::Sequence => vec![b, h * w, c],
            Layout::Spatial => held.to_vec(),
            Layout::ChannelsLast => vec![b, h, w, c],
            Layout::Volume { depth } => vec![b, c / depth.max(1), depth, h, w],
        }
    }

    /// The logical shape in words, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Features => "[batch, features]",
            Layout::Sequence => "[batch, tokens, features]",
            Layout::Spatial => "[batch, channels, height, width]",
            Layout::ChannelsLast => "[batch, height, width, channels]",
            Layout::Volume { .. } => "[batch, channels, depth, height, width]",
        }
    }

    /// A logical tensor of rank `D` (this layout's rank) in the engine's rank-4 form.
    pub fn hold<const D: usize>(self, x: Tensor<D>) -> Result<Tensor<4>> {
        if D != self.rank() {
            return Err(AttribError::InputRank { got: D });
        }
        let dims = x.dims();
        let d = |i: usize| dims.get(i).copied().unwrap_or(1);
        Ok(match self {
            Layout::Features => x.reshape([d(0), d(1), 1, 1]),
            Layout::Sequence => x.reshape([d(0), d(1), d(2)]).swap_dims(1, 2).reshape([d(0), d(2), d(1), 1]),
            Layout::Spatial => x.reshape([d(0), d(1), d(2), d(3)]),
            Layout::ChannelsLast => x.reshape([d(0), d(1), d(2), d(3)]).permute([0, 3, 1, 2]),
            Layout::Volume { depth } if depth == d(2) => x.reshape([d(0), d(1) * d(2), d(3), d(4)]),
            Layout::Volume { depth } => {
                return Err(AttribError::Shape {
                    layer: "input".into(),
                    expected: format!("[batch, channels, {depth}, height, width] (the layout's depth)"),
                    got: dims.to_vec(),
                });
            }
        })
    }

    /// A value held as rank 4 back in its logical form of rank `D` (this layout's rank).
    pub fn release<const D: usize>(self, held: Tensor<4>) -> Result<Tensor<D>> {
        if D != self.rank() {
            return Err(AttribError::InputRank { got: D });
        }
        let [b, c, h, w] = held.dims();
        if let Layout::Volume { depth } = self
            && (depth == 0 || !c.is_multiple_of(depth))
        {
            return Err(AttribError::Shape {
                layer: "output".into(),
                expected: format!("[batch, channels·{depth}, height, width] (a volume of depth {depth})"),
                got: vec![b, c, h, w],
            });
        }
        Ok(match self {
            Layout::Sequence => {
                held.reshape([b, c, h * w]).swap_dims(1, 2).reshape(self.logical_shape::<D>([b, c, h, w]))
            }
            Layout::ChannelsLast => held.permute([0, 2, 3, 1]).reshape(self.logical_shape::<D>([b, c, h, w])),
            _ => held.reshape(self.logical_shape::<D>([b, c, h, w])),
        })
    }

    /// A constant of logical shape `dims` (right-aligned to this layout's rank, as ONNX and NumPy
    /// broadcast: `[C, 1, 1]` against `[B, C, H, W]`), with its `values` in row-major order,
    /// brought to the held form that broadcasts against a value held as `held` in this layout.
    /// An error where the constant does not broadcast against the value.
    pub fn hold_constant(self, values: Tensor<1>, dims: &[usize], held: [usize; 4]) -> Result<Tensor<4>> {
        let rank = self.rank();
        let logical = self.logical_dims(held);
        let bad = || AttribError::Shape {
            layer: "constant".into(),
            expected: format!("a constant that broadcasts against {logical:?} ({})", self.describe()),
            got: dims.to_vec(),
        };
        if dims.len() > rank || values.dims()[0] != dims.iter().product::<usize>() {
            return Err(bad());
        }
        let full: Vec<usize> = std::iter::repeat_n(1, rank - dims.len()).chain(dims.iter().copied()).collect();
        if full.iter().zip(&logical).any(|(&c, &v)| c != 1 && c != v) {
            return Err(bad());
        }
        let at = |i: usize| full.get(i).copied().unwrap_or(1);
        Ok(match self {
            Layout::Features => values.reshape([at(0), at(1), 1, 1]),
            Layout::Sequence => values.reshape([at(0), at(1), at(2), 1]).swap_dims(1, 2),
            Layout::Spatial => values.reshape([at(0), at(1), at(2), at(3)]),
            Layout::ChannelsLast => values.reshape([at(0), at(1), at(2), at(3)]).permute([0, 3, 1, 2]),
            Layout::Volume { depth } => {
                let c = logical.get(1).copied().unwrap_or(1);
                let v: Tensor<5> = values.reshape([at(0), at(1), at(2), at(3), at(4)]);
                v.expand([at(0), c, depth, at(3), at(4)]).reshape([at(0), c * depth, at(3), at(4)])
            }
        })
    }

    fn logical_shape<const D: usize>(self, held: [usize; 4]) -> [usize; D] {
        let dims = self.logical_dims(held);
        std::array::from_fn(|i| dims.get(i).copied().unwrap_or(1))
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A layer that is linear (affine) in its input: `y = W ⋆ x + b`.
///
/// Rules work on this view. The weight is always a rank-4 tensor in a layout of the layer's own
/// choosing (Linear: `[out, in, 1, 1]`; Conv2d: `[out, in/groups, kh, kw]`; BatchNorm:
/// `[C, 1, 1, 1]`, the per-channel scale `γ/√(var+ε)`), so that a rule can modify it
/// elementwise (`W⁺`, `W⁻`, `W²`, …) without knowing the layer type.
///
/// Inputs are held in the engine's rank-4 form ([`Layout`]): features on axis 1, positions on
/// axes 2 and 3. Linear acts on the feature axis at every position (the last axis of a logical
/// `[B, F]` or `[B, T, D]`), Conv2d on the spatial axes.
///
/// # Shapes
///
/// - `x`: the layer input, `[B, C_in, H, W]` (vectors as `[B, F, 1, 1]`, token sequences
///   `[B, T, D]` as `[B, D, T, 1]`)
/// - `forward_with` output: `[B, C_out, H', W']`
/// - `transpose_with(y)`: same shape as `x`
pub trait LinearLayer {
    /// The layer's weight in its rank-4 layout.
    fn weight(&self) -> Tensor<4>;
    /// The layer's bias `[C_out]`, if it has one.
    fn bias(&self) -> Option<Tensor<1>>;

    /// The shape of [`weight`](LinearLayer::weight), without computing it (for memory
    /// estimates); the default computes the weight, so override it where that costs work.
    fn weight_dims(&self) -> [usize; 4] {
        self.weight().dims()
    }
    /// `W ⋆ x + b` with a given (possibly modified) weight and bias.
    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4>;
    /// The adjoint of `x ↦ W ⋆ x` (no bias), evaluated at `y`, for an input of shape `x_shape`.
    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4>;

    /// The adjoint with the layer's own weight: the vector–Jacobian product of the layer (the
    /// gradient methods' backward step). The default is
    /// [`transpose_with`](LinearLayer::transpose_with) with [`weight`](LinearLayer::weight);
    /// override it where the rule-facing weight costs a copy (Burn's `Linear` stores the
    /// transpose of it: VGG-16's first dense layer would copy 411 MB per call).
    fn adjoint(&self, y: Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        self.transpose_with(y, &self.weight(), x_shape)
    }

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

    /// Which inputs each output reads ([`LinearStructure`]); rules whose published form differs
    /// by structure (RAP's output-layer step and its shares, RAP on a per-channel scale) read it
    /// here instead of matching on layer types. The default is
    /// [`LinearStructure::Local`]: override it for a dense or per-channel layer of your own.
    fn structure(&self) -> LinearStructure {
        LinearStructure::Local
    }
}

/// Which inputs each output of a linear op reads: the property of the op that rules whose
/// published form differs between layer kinds (RAP) go by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinearStructure {
    /// Every output reads every input feature (a fully connected layer, Gemm).
    Dense,
    /// Each output reads a window of the input (a convolution).
    Local,
    /// Each output reads the one input at its own position, scaled (BatchNorm's per-channel
    /// scale).
    Diagonal,
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

/// What a rule knows about the layer it is applied to.
///
/// The walk fills it per op; a test or a layer of your own builds one with
/// [`RuleContext::new`] and the `with_*` setters.
#[derive(Clone)]
#[non_exhaustive]
pub struct RuleContext<'a> {
    /// The layer's name in the graph.
    pub name: &'a str,
    /// The layer's type.
    pub layer_type: LayerType,
    /// The layer receives the network input (through weight-free layers only).
    pub is_input_layer: bool,
    /// The layer produces the network output (through weight-free layers only).
    pub is_output_layer: bool,
    /// The layer's input is known to be non-negative from the graph (it comes from a ReLU,
    /// possibly through pooling, dropout, flatten or concatenation of such values). Rules use
    /// it to skip the empty x⁻ branch without reading the sign back from the device.
    pub input_nonnegative: bool,
    /// The rule by which an op without weights (pooling, the residual sum, the mean over
    /// tokens) shares relevance among its inputs, as the composite maps it
    /// ([`Composite::with_sharing_for`](crate::Composite::with_sharing_for)).
    pub sharing: &'a dyn ShareRule,
    /// How many rule-taking (linear) layers come before this one in execution order (0 for the
    /// first), for selectors by depth ([`Selector::when`](crate::Selector::when)).
    pub depth: usize,
    /// The layouts of the op's inputs ([`Layout`]), as the graph recorded them; empty where the
    /// caller set none ([`RuleContext::new`]).
    pub input_layouts: &'a [Layout],
    linear: Option<&'a dyn LinearLayer>,
}

impl std::fmt::Debug for RuleContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleContext")
            .field("name", &self.name)
            .field("layer_type", &self.layer_type)
            .field("is_input_layer", &self.is_input_layer)
            .field("is_output_layer", &self.is_output_layer)
            .field("input_nonnegative", &self.input_nonnegative)
            .field("sharing", &self.sharing)
            .field("depth", &self.depth)
            .field("input_layouts", &self.input_layouts)
            .finish_non_exhaustive()
    }
}

impl<'a> RuleContext<'a> {
    /// The context of a middle layer (neither input nor output layer, input sign unknown,
    /// [`Sharing::SafeDivide`], depth 0).
    pub fn new(name: &'a str, layer_type: LayerType) -> Self {
        Self {
            name,
            layer_type,
            is_input_layer: false,
            is_output_layer: false,
            input_nonnegative: false,
            sharing: &SAFE_DIVIDE,
            depth: 0,
            input_layouts: &[],
            linear: None,
        }
    }

    /// Sets whether the layer receives the network input.
    pub fn with_input_layer(mut self, yes: bool) -> Self {
        self.is_input_layer = yes;
        self
    }

    /// Sets whether the layer produces the network output.
    pub fn with_output_layer(mut self, yes: bool) -> Self {
        self.is_output_layer = yes;
        self
    }

    /// Sets whether the layer's input is known to be non-negative.
    pub fn with_input_nonnegative(mut self, yes: bool) -> Self {
        self.input_nonnegative = yes;
        self
    }

    /// Sets the rule by which an op without weights shares relevance.
    pub fn with_sharing(mut self, sharing: &'a dyn ShareRule) -> Self {
        self.sharing = sharing;
        self
    }

    /// Sets the layer's depth.
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Sets the layouts of the op's inputs.
    pub fn with_input_layouts(mut self, layouts: &'a [Layout]) -> Self {
        self.input_layouts = layouts;
        self
    }

    /// Sets the linear view the layer's relevance step hands its rule (the walk passes the
    /// layer seen through the explainer's kept weights).
    pub fn with_linear_view(mut self, linear: &'a dyn LinearLayer) -> Self {
        self.linear = Some(linear);
        self
    }

    /// The linear view the walk prepared for this layer (its weights kept between calls), if
    /// it set one; a layer's [`Relevance::relevance`](crate::Relevance::relevance) hands this
    /// to its rule rather than its own [`as_linear`](crate::Relevance::as_linear).
    pub fn linear_view(&self) -> Option<&'a dyn LinearLayer> {
        self.linear
    }
}

/// The authors' safe divide, the [`RuleContext::new`] default.
static SAFE_DIVIDE: Sharing = Sharing::SafeDivide;

/// A rule for the ops without weights: how pooling, the residual sum, concatenation and the mean
/// over tokens share the relevance of their output among their inputs.
///
/// These ops are positively homogeneous, so every published rule for them is the z-rule
/// `R_in = x ⊙ Jᵀ (R ⊘ z)` with the op's own adjoint `Jᵀ` and its output `z`; the rules differ in
/// how the divide is made safe, and in what max pooling does with a window whose maximum is
/// exactly `0`. A composite maps them per layer like the rules of linear layers
/// ([`Composite::with_sharing_for`](crate::Composite::with_sharing_for)); the two references'
/// behaviours are the two [`Sharing`] values.
///
/// A rule of your own, Zennit's Norm rule with a stabiliser that adds a fixed `ε`:
///
/// ```
/// use burn::tensor::Tensor;
/// use rap_attrib::rules::ShareRule;
///
/// #[derive(Debug)]
/// struct AddEpsilon(f64);
///
/// impl ShareRule for AddEpsilon {
///     fn name(&self) -> String {
///         format!("add-epsilon({})", self.0)
///     }
///     fn divide(&self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
///         r / z.add_scalar(self.0)
///     }
/// }
///
/// let composite = rap_attrib::Composite::rap().with_sharing(AddEpsilon(1e-3));
/// assert_eq!(composite.sharing().name(), "add-epsilon(0.001)");
/// ```
pub trait ShareRule: Debug + Send + Sync {
    /// A short name, shown in reports.
    fn name(&self) -> String;

    /// `r ⊘ z`, made safe where `z` is `0` or small.
    ///
    /// # Shapes
    ///
    /// - `r`, `z`: the op's output shape; result: the same
    fn divide(&self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4>;

    /// Whether a max-pool window whose maximum is exactly `0` keeps its relevance (the plain
    /// gradient) instead of dropping it (the z-rule, whose share `x ⊘ z` is `0/0` there). The
    /// default drops it.
    fn max_pool_passes_zero_windows(&self) -> bool {
        false
    }

    /// How a product of two activations shares relevance ([`ProductRule`]); the default is the
    /// uniform rule.
    fn product(&self) -> ProductRule {
        ProductRule::Uniform
    }

    /// How self-attention treats its softmax ([`SoftmaxRule`]); the default holds the attention
    /// weights constant (CP-LRP).
    fn softmax(&self) -> SoftmaxRule {
        SoftmaxRule::Constant
    }
}

/// How self-attention's softmax passes relevance ([`ShareRule::softmax`]).
///
/// | rule | `R_V` | the queries and keys |
/// |---|---|---|
/// | [`Constant`](SoftmaxRule::Constant) (CP-LRP, Ali et al., ICML 2022) | `V ⊙ Pᵀ S` | nothing |
/// | [`AttnLrp`](SoftmaxRule::AttnLrp) (AttnLRP, Achtibat et al., ICML 2024, Prop. 3.3 and the uniform rule on both products) | `½ V ⊙ Pᵀ S` | `R_q = ¼ q ⊙ G K/√d`, `R_k = ¼ K ⊙ Gᵀ q/√d` |
///
/// with `S = R_O ⊘ stab(O)` at the head output `O = P V`, `P = softmax(q Kᵀ/√d)` and
/// `G = P ⊙ (S Vᵀ − rowsum(P ⊙ S Vᵀ))`, the softmax's Jacobian applied to `S Vᵀ`: the softmax
/// rule `R_z = z ⊙ (R_P − P Σ R_P)` on the scores `z`, as LXT computes AttnLRP (its
/// `divide_gradient` by 4 on q and k and by 2 on v, the softmax's own gradient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SoftmaxRule {
    /// The attention weights held constant: the values receive all relevance (CP-LRP).
    #[default]
    Constant,
    /// AttnLRP's softmax rule, with the uniform rule on `q Kᵀ` and `P V`.
    AttnLrp,
}

/// A [`ShareRule`] with another rule for self-attention's softmax, and `inner` for everything
/// else: the `attn-lrp` preset is `WithSoftmax::new(Sharing::Norm(1e-6), SoftmaxRule::AttnLrp)`.
#[derive(Debug, Clone, Copy)]
pub struct WithSoftmax<S> {
    inner: S,
    softmax: SoftmaxRule,
}

impl<S: ShareRule> WithSoftmax<S> {
    /// `inner`, with `softmax` in self-attention.
    pub fn new(inner: S, softmax: SoftmaxRule) -> Self {
        Self { inner, softmax }
    }
}

impl<S: ShareRule> ShareRule for WithSoftmax<S> {
    fn name(&self) -> String {
        format!("{} ({:?} softmax)", self.inner.name(), self.softmax)
    }

    fn divide(&self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
        self.inner.divide(r, z)
    }

    fn max_pool_passes_zero_windows(&self) -> bool {
        self.inner.max_pool_passes_zero_windows()
    }

    fn product(&self) -> ProductRule {
        self.inner.product()
    }

    fn softmax(&self) -> SoftmaxRule {
        self.softmax
    }
}

/// How the product `y = a ⊙ b` of two activations shares relevance ([`ShareRule::product`]).
///
/// Both are from AttnLRP (Achtibat et al., ICML 2024, Prop. 3.2 and §3.3; LXT's
/// `divide_gradient(a·b, 2)` and `stop_gradient`):
///
/// | rule | `R_a` | `R_b` |
/// |---|---|---|
/// | [`Uniform`](ProductRule::Uniform) | `½R` | `½R` |
/// | [`GateConstant`](ProductRule::GateConstant) (where one operand is a gate) | `0` (the gate) | `R` |
///
/// Each share is summed over the axes along which its operand was broadcast (an SE gate
/// `[B, C, 1, 1]` receives `½ Σ_{h,w} R`). Both conserve `Σ R` exactly. A product that has no gate
/// operand (SiLU's `x·σ(x)`) takes the uniform rule under either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProductRule {
    /// Half of the relevance to each operand.
    #[default]
    Uniform,
    /// The gate operand held constant: all relevance to the gated operand.
    GateConstant,
}

/// A [`ShareRule`] with another rule for products, and `inner` for everything else: the
/// `cp-epsilon-gate-constant` preset is `WithProduct::new(Sharing::Norm(1e-6),
/// ProductRule::GateConstant)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WithProduct<S> {
    inner: S,
    product: ProductRule,
}

impl<S: ShareRule> WithProduct<S> {
    /// `inner`, with `product` for products of two activations.
    pub fn new(inner: S, product: ProductRule) -> Self {
        Self { inner, product }
    }
}

impl<S: ShareRule> ShareRule for WithProduct<S> {
    fn name(&self) -> String {
        format!("{} ({:?} products)", self.inner.name(), self.product)
    }

    fn divide(&self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
        self.inner.divide(r, z)
    }

    fn max_pool_passes_zero_windows(&self) -> bool {
        self.inner.max_pool_passes_zero_windows()
    }

    fn product(&self) -> ProductRule {
        self.product
    }

    fn softmax(&self) -> SoftmaxRule {
        self.inner.softmax()
    }
}

/// The two references' rules for ops without weights ([`ShareRule`]).
///
/// The RAP authors' code divides by the layer output with the safe divide (`0` where it is `0`)
/// and drops the relevance of a max-pool window whose maximum is `0`; Zennit applies its *Norm*
/// rule to average pools and the residual sum, with the stabiliser `z + e·sgn0(z)`
/// (`sgn0(0) = +1`), and leaves max pooling to its plain gradient.
///
/// | layer | [`Sharing::SafeDivide`] (authors' code) | [`Sharing::Norm`] (Zennit 0.5.1) |
/// |---|---|---|
/// | AvgPool2d, AdaptiveAvgPool2d/3d, TokenMean | `x ⊙ Jᵀ sd(R, z)` | `x ⊙ Jᵀ (R ⊘ (z + e·sgn0 z))` |
/// | residual Add | `a ⊙ sd(R, a + b)`, `b ⊙ sd(R, a + b)` | `a ⊙ R ⊘ stab(a + b)`, `b ⊙ R ⊘ stab(a + b)` |
/// | MaxPool2d | `R` to the first maximum, `0` where the maximum is `0` | `R` to the first maximum (gradient) |
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Sharing {
    /// The RAP reference's z-rule with the safe divide (the default).
    #[default]
    SafeDivide,
    /// Zennit's Norm rule with stabiliser `e` (Zennit's default `e` is `1e-6`).
    Norm(f64),
}

impl ShareRule for Sharing {
    fn name(&self) -> String {
        match self {
            Sharing::SafeDivide => "safe-divide".into(),
            Sharing::Norm(e) => format!("norm({e})"),
        }
    }

    fn divide(&self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
        let stabilizer = match *self {
            Sharing::SafeDivide => Stabilizer::Safe,
            Sharing::Norm(e) => Stabilizer::Epsilon(e),
        };
        stabilizer.divide(r, z)
    }

    fn max_pool_passes_zero_windows(&self) -> bool {
        matches!(self, Sharing::Norm(_))
    }
}

/// A propagation rule for linear layers.
///
/// Implement it for a rule of your own; [`z_step`](crate::rules::z_step) does the usual work.
pub trait Rule: Debug + Send + Sync {
    /// A short name, shown in reports.
    fn name(&self) -> String;

    /// Relevance at the input of `layer`, given its input `x` and the relevance `r` at its
    /// output.
    ///
    /// # Shapes
    ///
    /// - `x`: `[B, C_in, H, W]`; `r`: the layer output's shape; result: `x`'s shape
    fn relevance(&self, layer: &dyn LinearLayer, x: &Tensor<4>, r: Tensor<4>, ctx: &RuleContext) -> Result<Tensor<4>>;
}

/// How the denominator of [`z_step`](crate::rules::z_step) is made safe.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Stabilizer {
    /// `R / z` where `z ≠ 0`, else `0` (the RAP reference's safe divide).
    Safe,
    /// `R / (z + ε·sign(z))`, `sign(0) = 1` (Zennit's stabiliser).
    Epsilon(f64),
    /// `R / (z + ε)` (the reference code's Z^β for LRP).
    Add(f64),
}

impl Stabilizer {
    /// The stabiliser itself, or an error naming `rule` and `field` unless its ε is finite and
    /// positive.
    pub fn checked(self, rule: &str, field: &str) -> Result<Self> {
        let ok = match self {
            Stabilizer::Safe => true,
            Stabilizer::Epsilon(e) | Stabilizer::Add(e) => e.is_finite() && e > 0.0,
        };
        if ok {
            Ok(self)
        } else {
            Err(AttribError::InvalidParameter(format!(
                "{rule}: `{field}` = {self:?} is not allowed; Epsilon(ε) and Add(ε) need a finite ε > 0"
            )))
        }
    }

    /// `r / stab(z)`.
    pub fn divide(self, r: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
        match self {
            Stabilizer::Safe => safe_div(r, z),
            Stabilizer::Epsilon(eps) => r / stabilize(z, eps),
            Stabilizer::Add(eps) => r / z.add_scalar(eps),
        }
    }
}
