//! The weights an explainer keeps per layer between calls.

use crate::layers::{LinearLayer, WeightStack};
use burn::tensor::Tensor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// What is kept for one linear layer: its weight in the rule-facing layout, its bias and its
/// signed parts `[W⁺, |W⁻|]` (stacked by the layer), each made on first use.
#[derive(Default)]
pub(crate) struct LayerCache {
    weight: OnceLock<Tensor<4>>,
    bias: OnceLock<Option<Tensor<1>>>,
    signed: OnceLock<Arc<WeightStack>>,
}

impl LayerCache {
    /// The kept weight and bias, if both were made.
    pub(crate) fn kept(&self) -> Option<(Tensor<4>, Option<Tensor<1>>)> {
        Some((self.weight.get()?.clone(), self.bias.get()?.clone()))
    }

    /// Keeps a weight and bias made elsewhere (a canonizer's); what is kept already stays.
    pub(crate) fn keep(&self, weight: Tensor<4>, bias: Option<Tensor<1>>) {
        let _ = self.weight.set(weight);
        let _ = self.bias.set(bias);
    }
}

/// The weight cache of an explainer: one [`LayerCache`] per layer name, for the layer's current
/// identity.
///
/// A layer's identity is its weights key ([`Relevance::weights_key`](crate::Relevance::weights_key);
/// for a merged layer, the keys of the layer and its BatchNorm), which changes whenever the
/// layer's weights do. A name seen with a new identity replaces what was kept for it, so the
/// cache holds at most one entry per name however often a layer's weights change (a model
/// that builds fresh layers on every call keeps nothing stale and grows nothing).
#[derive(Default)]
pub(crate) struct WeightCache {
    layers: Mutex<HashMap<String, Kept>>,
}

/// What is kept under one name: the identity it was made for, and the entry.
type Kept = ((u64, u64), Arc<LayerCache>);

impl WeightCache {
    /// The entry of a layer, made empty on first use; `None` identity gives a fresh entry that
    /// nothing keeps.
    pub(crate) fn entry(&self, name: &str, identity: Option<(u64, u64)>) -> Arc<LayerCache> {
        let Some((a, b)) = identity else { return Arc::default() };
        // A poisoned lock only means another thread panicked while inserting; the map is
        // still a valid map of complete entries.
        let mut map = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some((kept, entry)) if *kept == (a, b) => entry.clone(),
            _ => {
                let entry = Arc::<LayerCache>::default();
                map.insert(name.to_string(), ((a, b), entry.clone()));
                entry
            }
        }
    }

    /// Forgets every kept weight.
    pub(crate) fn clear(&self) {
        self.layers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A linear layer seen through its cache entry: the weight, the bias and the signed parts are
/// computed once and then reused; the products are the layer's own.
pub(crate) struct CachedLinear<'l> {
    pub(crate) inner: &'l dyn LinearLayer,
    pub(crate) cache: &'l LayerCache,
}

impl LinearLayer for CachedLinear<'_> {
    fn weight(&self) -> Tensor<4> {
        self.cache.weight.get_or_init(|| self.inner.weight()).clone()
    }

    fn bias(&self) -> Option<Tensor<1>> {
        self.cache.bias.get_or_init(|| self.inner.bias()).clone()
    }

    fn weight_dims(&self) -> [usize; 4] {
        self.inner.weight_dims()
    }

    fn forward_with(&self, x: Tensor<4>, weight: &Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        self.inner.forward_with(x, weight, bias)
    }

    fn transpose_with(&self, y: Tensor<4>, weight: &Tensor<4>, x_shape: [usize; 4]) -> Tensor<4> {
        self.inner.transpose_with(y, weight, x_shape)
    }

    fn stack(&self, parts: Vec<Tensor<4>>) -> WeightStack {
        self.inner.stack(parts)
    }

    fn forward_stack(&self, x: Tensor<4>, stack: &WeightStack) -> Vec<Tensor<4>> {
        self.inner.forward_stack(x, stack)
    }

    fn transpose_stack(&self, ys: Vec<Tensor<4>>, stack: &WeightStack, x_shape: [usize; 4]) -> Tensor<4> {
        self.inner.transpose_stack(ys, stack, x_shape)
    }

    fn signed_weights(&self) -> Arc<WeightStack> {
        self.cache.signed.get_or_init(|| self.inner.signed_weights()).clone()
    }

    fn structure(&self) -> crate::base::LinearStructure {
        self.inner.structure()
    }
}
