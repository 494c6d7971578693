//! Composites: which rule each layer gets.
//!
//! A [`Composite`] is an ordered list of (selector, rule) pairs; the first selector that matches
//! a layer gives its rule. Selectors match by position (input layer, output layer), by type, by
//! name and by any predicate over the layer's context ([`Selector::when`]). Layer roles come from
//! the graph (the layer that receives the network input, the one that produces the output) or
//! from names the user gives; they are never guessed from shapes. A composite also holds the
//! [`Canonizer`]s applied to the graph before the walk, and the presets parse from their names
//! ([`Composite::from_str`](std::str::FromStr), [`Composite::preset`]).
//!
//! ```
//! use rap_attrib::{Composite, Selector, LayerType, rules::{Epsilon, ZPlus}};
//!
//! let composite = Composite::new()
//!     .with(Selector::Type(LayerType::Conv2d), ZPlus::zennit())
//!     .with(Selector::Any, Epsilon::default());
//! assert_eq!(composite.len(), 2);
//! ```

use crate::canonizer::{Canonizer, MergeBatchNorm};
use crate::error::{AttribError, Result};
use crate::layers::LayerType;
use crate::rules::{
    AlphaBeta, Bounds, Epsilon, Flat, Gamma, Pass, ProductRule, Rap, Rule, RuleContext, ShareRule, Sharing,
    SoftmaxRule, WithProduct, WithSoftmax, ZBeta, ZPlus,
};
use std::sync::Arc;

/// A predicate over a layer's context, for [`Selector::Predicate`] (built by [`Selector::when`]).
#[derive(Clone)]
pub struct Predicate(Arc<dyn Fn(&RuleContext) -> bool + Send + Sync>);

impl std::fmt::Debug for Predicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Predicate(..)")
    }
}

/// Two predicates are equal when they are the same closure (clones of one [`Selector::when`]).
impl PartialEq for Predicate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Which layers a composite entry applies to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Selector {
    /// Every layer.
    Any,
    /// The layer(s) receiving the network input.
    InputLayer,
    /// The layer(s) producing the network output.
    OutputLayer,
    /// Layers of this type.
    Type(LayerType),
    /// Convolutions of any rank (Conv2d, Conv3d: [`LayerType::is_convolution`]), as Zennit's
    /// `Convolution` type group; the presets map their convolution rules with it.
    Convolution,
    /// The layer of exactly this name.
    Name(String),
    /// Layers whose name starts with this prefix.
    NamePrefix(String),
    /// All of these selectors match.
    All(Vec<Selector>),
    /// Layers for which the predicate holds ([`Selector::when`]).
    Predicate(Predicate),
}

impl Selector {
    /// Layers for which `predicate` holds, given the layer's context: its name, type, roles and
    /// depth ([`RuleContext`]).
    ///
    /// ```
    /// use rap_attrib::{Composite, LayerType, Selector, rules::{Epsilon, ZPlus}};
    ///
    /// // Z⁺ on the convolutions of `features.` after the first three rule-taking layers.
    /// let deep_conv = Selector::when(|ctx| {
    ///     ctx.layer_type == LayerType::Conv2d && ctx.name.starts_with("features.") && ctx.depth >= 3
    /// });
    /// let composite = Composite::new().with(deep_conv, ZPlus::zennit()).with(Selector::Any, Epsilon::default());
    /// assert_eq!(composite.len(), 2);
    /// ```
    pub fn when(predicate: impl Fn(&RuleContext) -> bool + Send + Sync + 'static) -> Self {
        Selector::Predicate(Predicate(Arc::new(predicate)))
    }

    /// Whether the selector matches the layer described by `ctx`.
    pub fn matches(&self, ctx: &RuleContext) -> bool {
        match self {
            Selector::Any => true,
            Selector::InputLayer => ctx.is_input_layer,
            Selector::OutputLayer => ctx.is_output_layer,
            Selector::Type(t) => &ctx.layer_type == t,
            Selector::Convolution => ctx.layer_type.is_convolution(),
            Selector::Name(n) => ctx.name == n,
            Selector::NamePrefix(p) => ctx.name.starts_with(p.as_str()),
            Selector::All(all) => all.iter().all(|s| s.matches(ctx)),
            Selector::Predicate(p) => (p.0)(ctx),
        }
    }
}

/// How the relevance at the output starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    initial: InitialRelevance,
    input_layers: Vec<String>,
    output_layers: Vec<String>,
    batch_norm: BatchNormMerge,
    canonizers: Vec<Arc<dyn Canonizer>>,
    sharing: Arc<dyn ShareRule>,
    sharing_entries: Vec<(Selector, Arc<dyn ShareRule>)>,
}

/// Whether and how BatchNorm is merged into the Linear or convolution before it (the canonizer
/// [`MergeBatchNorm`], first in [`Composite::canonizers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BatchNormMerge {
    /// BatchNorm stays a layer of its own, and the composite's rule for it applies.
    #[default]
    Off,
    /// Folded exactly: `W' = ŵ·W`, `b' = ŵ·(b − μ) + β` with `ŵ = γ/√(var + ε)`; the merged
    /// network computes the same function. The BatchNorm stays in the trace as an identity that
    /// passes relevance unchanged.
    Exact,
    /// Folded as Zennit 0.5.1's `SequentialMergeBatchNorm` does: the same fold, but Zennit keeps
    /// the BatchNorm module with its statistics reset (mean 0, variance 1, γ 1, β 0) and its
    /// `ε`, so every merged BatchNorm still divides by `√(1 + ε)`. The forward pass is run again
    /// through this canonized network from the first merged layer on (up to one forward more;
    /// nothing more for a network without BatchNorm), and relevance passes the BatchNorm
    /// unchanged. The explanation's logits stay the model's own.
    Zennit,
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
            batch_norm: BatchNormMerge::Off,
            canonizers: Vec::new(),
            sharing: Arc::new(Sharing::SafeDivide),
            sharing_entries: Vec::new(),
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

    /// How the output relevance starts.
    pub fn initial(&self) -> InitialRelevance {
        self.initial
    }

    /// Names of the input layers; empty means "by position in the graph" (the first linear
    /// layer on every path from the input).
    pub fn input_layers(&self) -> &[String] {
        &self.input_layers
    }

    /// Names of the output layers; empty means "by position in the graph" (the last linear
    /// layer).
    pub fn output_layers(&self) -> &[String] {
        &self.output_layers
    }

    /// Sets how the output relevance starts.
    pub fn with_initial(mut self, initial: InitialRelevance) -> Self {
        self.initial = initial;
        self
    }

    /// Appends a canonizer, applied to the graph before the walk after the ones already held
    /// (the BatchNorm merge, when set, runs first).
    pub fn with_canonizer(mut self, canonizer: impl Canonizer + 'static) -> Self {
        self.canonizers.push(Arc::new(canonizer));
        self
    }

    /// Appends a shared canonizer.
    pub fn with_shared_canonizer(mut self, canonizer: Arc<dyn Canonizer>) -> Self {
        self.canonizers.push(canonizer);
        self
    }

    /// The canonizers applied before the walk, in order: the BatchNorm merge
    /// ([`with_batch_norm_merge`](Composite::with_batch_norm_merge)) when set, then the ones added
    /// with [`with_canonizer`](Composite::with_canonizer).
    pub fn canonizers(&self) -> Vec<Arc<dyn Canonizer>> {
        let merge: Option<Arc<dyn Canonizer>> = match self.batch_norm {
            BatchNormMerge::Exact => Some(Arc::new(MergeBatchNorm::exact())),
            BatchNormMerge::Zennit => Some(Arc::new(MergeBatchNorm::zennit())),
            BatchNormMerge::Off => None,
        };
        merge.into_iter().chain(self.canonizers.iter().cloned()).collect()
    }

    /// Merges BatchNorm exactly into the preceding Linear/Conv2d ([`BatchNormMerge::Exact`]) or
    /// not at all ([`BatchNormMerge::Off`]).
    pub fn with_merged_batch_norm(mut self, merge: bool) -> Self {
        self.batch_norm = if merge { BatchNormMerge::Exact } else { BatchNormMerge::Off };
        self
    }

    /// Sets whether and how BatchNorm is merged.
    pub fn with_batch_norm_merge(mut self, merge: BatchNormMerge) -> Self {
        self.batch_norm = merge;
        self
    }

    /// Whether and how BatchNorm is merged.
    pub fn batch_norm_merge(&self) -> BatchNormMerge {
        self.batch_norm
    }

    /// The rule by which ops without weights (pooling, the residual sum, concatenation, the
    /// mean over tokens) share relevance wherever no
    /// [`with_sharing_for`](Composite::with_sharing_for) entry matches: the authors' safe divide
    /// (the default), Zennit's Norm rule ([`Sharing`]), or a [`ShareRule`] of your own.
    pub fn with_sharing(mut self, sharing: impl ShareRule + 'static) -> Self {
        self.sharing = Arc::new(sharing);
        self
    }

    /// The rule for ops without weights that no
    /// [`with_sharing_for`](Composite::with_sharing_for) entry matches.
    pub fn sharing(&self) -> &dyn ShareRule {
        &*self.sharing
    }

    /// Maps ops without weights to the rule by which they share relevance ([`ShareRule`]), as
    /// [`with`](Composite::with) maps rules to linear layers (Zennit's `layer_map` for pools
    /// and sums): the first matching entry wins, and ops no entry matches take
    /// [`sharing`](Composite::sharing).
    ///
    /// ```
    /// use rap_attrib::{Composite, LayerType, Selector, rules::Sharing};
    ///
    /// // Zennit's Norm rule on the residual sums only; the pools keep the authors' safe divide.
    /// let c = Composite::rap().with_sharing_for(Selector::Type(LayerType::Add), Sharing::Norm(1e-6));
    /// assert_eq!(c.sharing().name(), "safe-divide");
    /// ```
    pub fn with_sharing_for(mut self, selector: Selector, sharing: impl ShareRule + 'static) -> Self {
        self.sharing_entries.push((selector, Arc::new(sharing)));
        self
    }

    /// The rule by which the op described by `ctx` shares relevance: its first matching
    /// [`with_sharing_for`](Composite::with_sharing_for) entry, else the default.
    pub fn sharing_for(&self, ctx: &RuleContext) -> &dyn ShareRule {
        self.sharing_entries.iter().find(|(s, _)| s.matches(ctx)).map_or(&*self.sharing, |(_, sharing)| &**sharing)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the composite has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks every layer name the composite gives (input and output layers, `Selector::Name`
    /// and `Selector::NamePrefix`) against the names of a traced model; an unknown one is
    /// [`AttribError::UnknownLayer`] listing the model's layers.
    pub fn check_names(&self, layer_names: &[&str]) -> Result<()> {
        let unknown = |field: &str, name: &str| AttribError::UnknownLayer {
            field: field.to_string(),
            name: name.to_string(),
            known: layer_names.join(", "),
        };
        for (field, list) in [("input_layers", &self.input_layers), ("output_layers", &self.output_layers)] {
            if let Some(n) = list.iter().find(|n| !layer_names.contains(&n.as_str())) {
                return Err(unknown(field, n));
            }
        }
        fn walk<'s>(s: &'s Selector, out: &mut Vec<&'s Selector>) {
            match s {
                Selector::All(all) => all.iter().for_each(|s| walk(s, out)),
                other => out.push(other),
            }
        }
        let mut leaves = Vec::new();
        for s in self.entries.iter().map(|(s, _)| s).chain(self.sharing_entries.iter().map(|(s, _)| s)) {
            walk(s, &mut leaves);
        }
        for s in leaves {
            match s {
                Selector::Name(n) if !layer_names.contains(&n.as_str()) => return Err(unknown("Selector::Name", n)),
                Selector::NamePrefix(p) if !layer_names.iter().any(|l| l.starts_with(p.as_str())) => {
                    return Err(unknown("Selector::NamePrefix", p));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The rule of the first matching entry.
    pub fn rule_for(&self, ctx: &RuleContext) -> Option<Arc<dyn Rule>> {
        self.entries.iter().find(|(s, _)| s.matches(ctx)).map(|(_, r)| r.clone())
    }

    fn input_conv() -> Selector {
        Selector::All(vec![Selector::InputLayer, Selector::Convolution])
    }

    /// RAP as the authors' reference runs it: one-hot start, [`Rap`] everywhere, [`ZBeta`] with
    /// per-sample bounds at a convolution input layer (Conv2d, Conv3d), BatchNorm as [`Pass`] masked at zero inputs.
    pub fn rap() -> Self {
        Self::new()
            .with_initial(InitialRelevance::OneHot)
            .with(Self::input_conv(), ZBeta::default())
            .with(Selector::Type(LayerType::BatchNorm), Pass::masked())
            .with(Selector::Any, Rap::default())
    }

    /// LRP-αβ as the RAP reference runs it: logit start, [`AlphaBeta`] everywhere (output layer
    /// included), [`ZBeta::reference_lrp`] at a convolution input layer, BatchNorm as masked [`Pass`].
    pub fn lrp_alpha_beta(alpha: f64, beta: f64) -> Result<Self> {
        Ok(Self::new()
            .with(Self::input_conv(), ZBeta::reference_lrp())
            .with(Selector::Type(LayerType::BatchNorm), Pass::masked())
            .with(Selector::Any, AlphaBeta::new(alpha, beta)?))
    }

    /// LRP-ε on every linear layer; BatchNorm passes relevance unchanged.
    pub fn epsilon(epsilon: f64) -> Result<Self> {
        Ok(Self::new()
            .with(Selector::Type(LayerType::BatchNorm), Pass::default())
            .with(Selector::Any, Epsilon::new(epsilon)?))
    }

    /// What every Zennit preset shares: one-hot start (Zennit's `Gradient` attributor with a
    /// one-hot output), BatchNorm merged into the layer before it (`SequentialMergeBatchNorm`,
    /// and the residual sum of `ResNetCanonizer`), Pass on BatchNorm, Zennit's Norm rule on
    /// average pools and the residual sum, LRP-ε (1e-6) on every Linear.
    fn zennit(first: Option<(bool, Arc<dyn Rule>)>, conv: impl Rule + 'static) -> Self {
        let mut c = Self::new()
            .with_initial(InitialRelevance::OneHot)
            .with_batch_norm_merge(BatchNormMerge::Zennit)
            .with_sharing(Sharing::Norm(1e-6));
        if let Some((linear_too, rule)) = first {
            c = c.with_shared(Self::input_conv(), rule.clone());
            if linear_too {
                c = c.with_shared(Selector::All(vec![Selector::InputLayer, Selector::Type(LayerType::Linear)]), rule);
            }
        }
        c.with(Selector::Type(LayerType::BatchNorm), Pass::default())
            .with(Selector::Convolution, conv)
            .with(Selector::Any, Epsilon::default())
    }

    /// Zennit 0.5.1's `EpsilonPlusFlat`: Flat on the input layer (a convolution or a Linear), Z⁺
    /// (with `b⁺`) on every other convolution, LRP-ε (1e-6) on every other Linear; see
    /// [`Composite::zennit_epsilon_plus`] for what all Zennit presets share.
    ///
    /// Reproduces Zennit's numbers (`tests/data/golden_zennit`, `cargo test --test it golden::`).
    pub fn zennit_epsilon_plus_flat() -> Self {
        Self::zennit(Some((true, Arc::new(Flat::zennit()))), ZPlus::zennit())
    }

    /// Zennit 0.5.1's `EpsilonPlus`: Z⁺ (with `b⁺`, stabiliser `1e-6`) on every convolution (Conv2d, Conv3d), LRP-ε
    /// (1e-6) on every Linear, no special input layer.
    ///
    /// All Zennit presets start from the one-hot target (not the logit), merge BatchNorm into
    /// the layer before it as Zennit does ([`BatchNormMerge::Zennit`]) and then pass relevance
    /// through it unchanged, apply Zennit's Norm
    /// rule ([`Sharing::Norm`]) to average pools and the residual sum, and leave max pooling,
    /// concatenation, flattening and dropout to the gradient. Zennit chooses its "first layer"
    /// by module registration order; here it is the layer that receives the network input
    /// (the same layer in sequential networks and torchvision's models).
    pub fn zennit_epsilon_plus() -> Self {
        Self::zennit(None, ZPlus::zennit())
    }

    /// Zennit 0.5.1's `EpsilonGammaBox(low, high)`: ZBox (Z^β with `bounds`, stabiliser `1e-6`)
    /// on a convolution input layer only (a Linear input layer gets LRP-ε), generalised LRP-γ
    /// (γ = 0.25) on every other convolution, LRP-ε (1e-6) on every Linear; see
    /// [`Composite::zennit_epsilon_plus`] for what all Zennit presets share.
    pub fn zennit_epsilon_gamma_box(bounds: Bounds) -> Self {
        Self::zennit(Some((false, Arc::new(ZBeta::zennit(bounds)))), Gamma::default())
    }

    /// Zennit 0.5.1's `EpsilonAlpha2Beta1`: Zennit's LRP-α2β1 (pooled signs, bias shares,
    /// stabiliser `1e-6`) on every convolution, LRP-ε (1e-6) on every Linear, no special input
    /// layer; see [`Composite::zennit_epsilon_plus`] for what all Zennit presets share.
    pub fn zennit_epsilon_alpha2_beta1() -> Self {
        Self::zennit(None, AlphaBeta::zennit_alpha2_beta1())
    }

    /// Zennit 0.5.1's `EpsilonAlpha2Beta1Flat`: as [`Composite::zennit_epsilon_alpha2_beta1`]
    /// with Flat on the input layer (a convolution or a Linear).
    pub fn zennit_epsilon_alpha2_beta1_flat() -> Self {
        Self::zennit(Some((true, Arc::new(Flat::zennit()))), AlphaBeta::zennit_alpha2_beta1())
    }
}

/// The presets of AttnLRP/CP-LRP (LXT) for networks with modern operators.
impl Composite {
    /// `cp-epsilon`: the conservative-propagation preset of LXT 2.1 (AttnLRP, Achtibat et al.,
    /// ICML 2024; CP-LRP, Ali et al., ICML 2022), as `../shared/modern/README.md` states it per
    /// operator: the start at the target logit; BatchNorm folded exactly into the convolution
    /// before it ([`BatchNormMerge::Exact`]); LRP-ε (ε = 1e-6) on every linear op; the identity
    /// rule on element-wise activations (the ops' own step); the uniform rule on products of
    /// two activations; Zennit's Norm rule (`z + 1e-6·sgn0 z`) on the residual sum and the
    /// average pools; a constant scale passes relevance unchanged.
    pub fn cp_epsilon() -> Self {
        Self::new()
            .with_initial(InitialRelevance::Logit)
            .with_batch_norm_merge(BatchNormMerge::Exact)
            .with_sharing(Sharing::Norm(1e-6))
            .with(Selector::Any, Epsilon::default())
    }

    /// `cp-epsilon-gate-constant`: [`Composite::cp_epsilon`] with the gate of every gated product
    /// (an SE block's `σ(…) ⊙ x`) held constant ([`ProductRule::GateConstant`]): the gated
    /// operand receives all relevance and the SE branch none.
    pub fn cp_epsilon_gate_constant() -> Self {
        Self::cp_epsilon().with_sharing(WithProduct::new(Sharing::Norm(1e-6), ProductRule::GateConstant))
    }

    /// `cp-gamma`: [`Composite::cp_epsilon`] with Zennit's generalised LRP-γ ([`Gamma::new`],
    /// stabiliser 1e-6) instead of LRP-ε: γ = 0.25 on every convolution and γ = 0.05 on every
    /// Linear (the values of both of LXT's documented sweeps for vision transformers).
    pub fn cp_gamma() -> Self {
        let gamma = |g| Gamma::new(g).unwrap_or_default();
        Self::new()
            .with_initial(InitialRelevance::Logit)
            .with_batch_norm_merge(BatchNormMerge::Exact)
            .with_sharing(Sharing::Norm(1e-6))
            .with(Selector::Convolution, gamma(0.25))
            .with(Selector::Type(LayerType::Linear), gamma(0.05))
            .with(Selector::Any, Epsilon::default())
    }

    /// `attn-lrp`: [`Composite::cp_epsilon`] with AttnLRP's softmax rule in self-attention
    /// (Achtibat et al., ICML 2024; [`SoftmaxRule::AttnLrp`]): relevance also flows through the
    /// queries and keys (the softmax rule, and the uniform rule on `q Kᵀ` and `P V`), as LXT's
    /// AttnLRP patches compute it. On networks without attention it equals `cp-epsilon`.
    pub fn attn_lrp() -> Self {
        Self::cp_epsilon().with_sharing(WithSoftmax::new(Sharing::Norm(1e-6), SoftmaxRule::AttnLrp))
    }
}

/// The presets by name ([`Composite::PRESETS`]).
impl Composite {
    /// The names [`Composite::preset`] and [`FromStr`](std::str::FromStr) take.
    pub const PRESETS: [&'static str; 13] = [
        "rap",
        "lrp-a1b0",
        "lrp-a2b1",
        "lrp-eps",
        "epsilon-plus",
        "epsilon-plus-flat",
        "epsilon-gamma-box",
        "epsilon-alpha2-beta1",
        "epsilon-alpha2-beta1-flat",
        "cp-epsilon",
        "cp-epsilon-gate-constant",
        "cp-gamma",
        "attn-lrp",
    ];

    /// A preset by name, with `input_bounds` for the presets whose input layer takes Z^β / ZBox
    /// (`lrp-eps`, `epsilon-gamma-box`): the range of the input values, per sample
    /// ([`Bounds::PerSample`]) or for the model's normalisation (for ImageNet-normalised photos,
    /// [`Bounds::normalized_unit_range`]).
    ///
    /// | name | composite |
    /// |---|---|
    /// | `rap` | [`Composite::rap`] |
    /// | `lrp-a1b0`, `lrp-a2b1` | [`Composite::lrp_alpha_beta`] (1, 0) and (2, 1) |
    /// | `lrp-eps` | Z^β (`input_bounds`) on the input layer, Pass on BatchNorm, LRP-ε elsewhere |
    /// | `epsilon-plus` | [`Composite::zennit_epsilon_plus`] |
    /// | `epsilon-plus-flat` | [`Composite::zennit_epsilon_plus_flat`] |
    /// | `epsilon-gamma-box` | [`Composite::zennit_epsilon_gamma_box`] (`input_bounds`) |
    /// | `epsilon-alpha2-beta1` | [`Composite::zennit_epsilon_alpha2_beta1`] |
    /// | `epsilon-alpha2-beta1-flat` | [`Composite::zennit_epsilon_alpha2_beta1_flat`] |
    /// | `cp-epsilon` | [`Composite::cp_epsilon`] |
    /// | `cp-epsilon-gate-constant` | [`Composite::cp_epsilon_gate_constant`] |
    /// | `cp-gamma` | [`Composite::cp_gamma`] |
    /// | `attn-lrp` | [`Composite::attn_lrp`] |
    ///
    /// An underscore reads as a hyphen (`cp_epsilon`). Any other name is
    /// [`AttribError::InvalidParameter`] listing these.
    pub fn preset(name: &str, input_bounds: Bounds) -> Result<Self> {
        Ok(match name.replace('_', "-").as_str() {
            "rap" => Composite::rap(),
            "lrp-a1b0" => Composite::lrp_alpha_beta(1.0, 0.0)?,
            "lrp-a2b1" => Composite::lrp_alpha_beta(2.0, 1.0)?,
            "lrp-eps" => Composite::new()
                .with(Selector::InputLayer, ZBeta::new(input_bounds))
                .with(Selector::Type(LayerType::BatchNorm), Pass::default())
                .with(Selector::Any, Epsilon::default()),
            "epsilon-plus" => Composite::zennit_epsilon_plus(),
            "epsilon-plus-flat" => Composite::zennit_epsilon_plus_flat(),
            "epsilon-gamma-box" => Composite::zennit_epsilon_gamma_box(input_bounds),
            "epsilon-alpha2-beta1" => Composite::zennit_epsilon_alpha2_beta1(),
            "epsilon-alpha2-beta1-flat" => Composite::zennit_epsilon_alpha2_beta1_flat(),
            "cp-epsilon" => Composite::cp_epsilon(),
            "cp-epsilon-gate-constant" => Composite::cp_epsilon_gate_constant(),
            "cp-gamma" => Composite::cp_gamma(),
            "attn-lrp" => Composite::attn_lrp(),
            _ => {
                return Err(AttribError::InvalidParameter(format!(
                    "preset `{name}` is not allowed; expected one of {}",
                    Self::PRESETS.join(", ")
                )));
            }
        })
    }
}

/// A preset by name ([`Composite::preset`]), with per-sample input bounds.
///
/// ```
/// use rap_attrib::Composite;
///
/// let c: Composite = "epsilon-plus-flat".parse()?;
/// assert!(!c.is_empty());
/// assert!("lrp-zero".parse::<Composite>().is_err());
/// # Ok::<(), rap_attrib::AttribError>(())
/// ```
impl std::str::FromStr for Composite {
    type Err = AttribError;

    fn from_str(name: &str) -> Result<Self> {
        Composite::preset(name, Bounds::PerSample)
    }
}
