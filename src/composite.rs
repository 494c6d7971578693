//! Composites: which rule each layer gets.
//!
//! A [`Composite`] is an ordered list of (selector, rule) pairs; the first selector that matches
//! a layer gives its rule. Selectors match by position (input layer, output layer), by type and
//! by name. Layer roles come from the graph (the layer that receives the network input, the one
//! that produces the output) or from names the user gives; they are never guessed from shapes.
//!
//! ```
//! use rap_attrib::{Composite, Selector, LayerType, rules::{Epsilon, ZPlus}};
//!
//! let composite = Composite::new()
//!     .with(Selector::Type(LayerType::Conv2d), ZPlus)
//!     .with(Selector::Any, Epsilon::default());
//! assert_eq!(composite.len(), 2);
//! ```

use crate::layers::LayerType;
use crate::rules::{AlphaBeta, Bounds, Epsilon, Gamma, Pass, Rap, Rule, RuleContext, ZBeta, ZPlus};
use std::sync::Arc;

/// Which layers a composite entry applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Every layer.
    Any,
    /// The layer(s) receiving the network input.
    InputLayer,
    /// The layer(s) producing the network output.
    OutputLayer,
    /// Layers of this type.
    Type(LayerType),
    /// The layer of exactly this name.
    Name(String),
    /// Layers whose name starts with this prefix.
    NamePrefix(String),
    /// All of these selectors match.
    All(Vec<Selector>),
}

impl Selector {
    /// Whether the selector matches the layer described by `ctx`.
    pub fn matches(&self, ctx: &RuleContext) -> bool {
        match self {
            Selector::Any => true,
            Selector::InputLayer => ctx.is_input_layer,
            Selector::OutputLayer => ctx.is_output_layer,
            Selector::Type(t) => &ctx.layer_type == t,
            Selector::Name(n) => ctx.name == n,
            Selector::NamePrefix(p) => ctx.name.starts_with(p.as_str()),
            Selector::All(all) => all.iter().all(|s| s.matches(ctx)),
        }
    }
}

/// How the relevance at the output starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialRelevance {
    /// The one-hot target vector (RAP).
    OneHot,
    /// The target logit times the one-hot vector (LRP).
    Logit,
}

/// Maps layers to rules, with explicit layer roles and presets.
#[derive(Debug, Clone)]
pub struct Composite {
    entries: Vec<(Selector, Arc<dyn Rule>)>,
    /// How the output relevance starts.
    pub initial: InitialRelevance,
    /// Names of the input layers; empty means "by position in the graph".
    pub input_layers: Vec<String>,
    /// Names of the output layers; empty means "by position in the graph".
    pub output_layers: Vec<String>,
    /// Merge eval-mode BatchNorm into the preceding Linear/Conv2d before propagating.
    pub merge_batch_norm: bool,
}

impl Default for Composite {
    fn default() -> Self {
        Self::new()
    }
}

impl Composite {
    /// An empty composite (LRP-style logit start, roles by position).
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            initial: InitialRelevance::Logit,
            input_layers: Vec::new(),
            output_layers: Vec::new(),
            merge_batch_norm: false,
        }
    }

    /// Appends an entry; earlier entries win.
    pub fn with(mut self, selector: Selector, rule: impl Rule + 'static) -> Self {
        self.entries.push((selector, Arc::new(rule)));
        self
    }

    /// Appends an entry with a shared rule.
    pub fn with_shared(mut self, selector: Selector, rule: Arc<dyn Rule>) -> Self {
        self.entries.push((selector, rule));
        self
    }

    /// Names the input layers explicitly (instead of by position).
    pub fn with_input_layers<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.input_layers = names.into_iter().map(Into::into).collect();
        self
    }

    /// Names the output layers explicitly (instead of by position).
    pub fn with_output_layers<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.output_layers = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets how the output relevance starts.
    pub fn with_initial(mut self, initial: InitialRelevance) -> Self {
        self.initial = initial;
        self
    }

    /// Merges BatchNorm into the preceding Linear/Conv2d (Zennit's SequentialMergeBatchNorm).
    pub fn with_merged_batch_norm(mut self, merge: bool) -> Self {
        self.merge_batch_norm = merge;
        self
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the composite has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rule of the first matching entry.
    pub fn rule_for(&self, ctx: &RuleContext) -> Option<Arc<dyn Rule>> {
        self.entries.iter().find(|(s, _)| s.matches(ctx)).map(|(_, r)| r.clone())
    }

    fn input_conv() -> Selector {
        Selector::All(vec![Selector::InputLayer, Selector::Type(LayerType::Conv2d)])
    }

    /// RAP as the authors' reference runs it: one-hot start, [`Rap`] everywhere, [`ZBeta`] with
    /// per-sample bounds at a Conv2d input layer, BatchNorm as [`Pass`] masked at zero inputs.
    pub fn rap() -> Self {
        Self::new()
            .with_initial(InitialRelevance::OneHot)
            .with(Self::input_conv(), ZBeta::default())
            .with(Selector::Type(LayerType::BatchNorm), Pass { mask_zero_inputs: true })
            .with(Selector::Any, Rap::default())
    }

    /// LRP-αβ as the RAP reference runs it: logit start, [`AlphaBeta`] everywhere (output layer
    /// included), [`ZBeta::reference_lrp`] at a Conv2d input layer, BatchNorm as masked [`Pass`].
    pub fn lrp_alpha_beta(alpha: f64, beta: f64) -> crate::Result<Self> {
        Ok(Self::new()
            .with(Self::input_conv(), ZBeta::reference_lrp())
            .with(Selector::Type(LayerType::BatchNorm), Pass { mask_zero_inputs: true })
            .with(Selector::Any, AlphaBeta::new(alpha, beta)?))
    }

    /// LRP-ε on every linear layer; BatchNorm passes relevance unchanged.
    pub fn epsilon(epsilon: f64) -> crate::Result<Self> {
        Ok(Self::new()
            .with(Selector::Type(LayerType::BatchNorm), Pass::default())
            .with(Selector::Any, Epsilon::new(epsilon)?))
    }

    /// Zennit's EpsilonPlus: Z⁺ on convolutions, LRP-ε (1e-6) on dense layers, BatchNorm merged.
    pub fn epsilon_plus() -> Self {
        Self::new()
            .with_merged_batch_norm(true)
            .with(Selector::Type(LayerType::BatchNorm), Pass::default())
            .with(Selector::Type(LayerType::Conv2d), ZPlus)
            .with(Selector::Any, Epsilon::default())
    }

    /// Zennit's EpsilonGammaBox: Z^β with the box `[low, high]` at the input layer, LRP-γ (0.25)
    /// on convolutions, LRP-ε (1e-6) on dense layers, BatchNorm merged.
    pub fn epsilon_gamma_box(bounds: Bounds) -> Self {
        Self::new()
            .with_merged_batch_norm(true)
            .with(Selector::InputLayer, ZBeta::new(bounds))
            .with(Selector::Type(LayerType::BatchNorm), Pass::default())
            .with(Selector::Type(LayerType::Conv2d), Gamma::default())
            .with(Selector::Any, Epsilon::default())
    }
}
