//! Model zoo: torchvision's VGG-16, ResNet-18, ResNet-50 and SqueezeNet 1.1, with torchvision's
//! architecture and parameter names, explainable by every rule with their layer roles preset.
//!
//! ```no_run
//! use rap_attrib::zoo::{Architecture, ZooModel};
//! use rap_attrib::burn::tensor::Device;
//!
//! let device = Device::flex();
//! // A torchvision checkpoint (.pth) or a safetensors file in torchvision naming.
//! let model = ZooModel::load(Architecture::ResNet50, "resnet50.pth", &device)?;
//! let composite = model.composite("rap")?;
//! # Ok::<(), rap_attrib::AttribError>(())
//! ```
//!
//! The networks are built from descriptions in the golden sidecar format
//! ([`SpecNetwork`]), so every layer is one the engine knows. Weights are checked strictly:
//! a missing, extra or wrongly shaped tensor is an [`AttribError::Weights`](crate::AttribError::Weights) naming it.

// Indexing is checked by construction here: random parameters are made for the zoo's own descriptions, whose shapes are never empty.
#![allow(clippy::indexing_slicing)]

mod arch;
mod weights;

pub use arch::{Architecture, ZooConfig};
pub use weights::{expected_parameters, load_parameters};

use crate::composite::Composite;
use crate::error::Result;
use crate::rules::Bounds;
use crate::spec::{HostTensor, Params, SpecNetwork};
use crate::walk::{Explain, Node, Tracer};
use burn::tensor::Device;
use std::collections::HashMap;
use std::path::Path;

pub use crate::tensor::{IMAGENET_MEAN, IMAGENET_STD};

/// The rule sets the zoo (and the `explain` example) offer by name: [`Composite::PRESETS`].
pub const RULE_NAMES: [&str; 13] = Composite::PRESETS;

/// The preset of one of [`RULE_NAMES`] for a model of ImageNet-normalised photos
/// ([`Composite::preset`] with the input bounds of that normalisation), with the input and output
/// layers found in the graph (the first and the last linear layer). [`ZooModel::composite`] names
/// them; any other model of such photos, an ONNX one for example, can take this.
pub fn rule_preset(rule: &str) -> Result<Composite> {
    Composite::preset(rule, Bounds::normalized_unit_range(&IMAGENET_MEAN, &IMAGENET_STD))
}

/// Random parameters for every tensor a network description expects, deterministic in `seed`:
/// He-normal weights of convolutions and linear layers (`N(0, 2/fan_in)`), biases `N(0, 0.01²)`.
/// BatchNorm is the identity (γ = 1, β = 0, mean 0, variance 1) unless `random_batch_norm`, which
/// draws γ and the variance uniformly from `[0.5, 1.5)`, and β and the mean from `N(0, 0.1²)`.
pub fn random_parameters(
    spec: &crate::spec::NetworkDesc,
    seed: u64,
    random_batch_norm: bool,
) -> HashMap<String, HostTensor> {
    use rand::{RngExt, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let batch_norm = |name: &str| name.contains("bn") || name.contains("downsample.1") || name.contains("running_");
    expected_parameters(spec)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let mut normal = |scale: f64| -> f32 {
                let z: f64 = StandardNormal.sample(&mut rng);
                (z * scale) as f32
            };
            let values: Vec<f32> = if shape.len() > 1 {
                let fan_in: usize = shape[1..].iter().product();
                let s = (2.0 / fan_in.max(1) as f64).sqrt();
                (0..n).map(|_| normal(s)).collect()
            } else if !batch_norm(&name) {
                (0..n).map(|_| normal(0.01)).collect()
            } else if !random_batch_norm {
                let one = name.ends_with("running_var") || name.ends_with(".weight");
                vec![if one { 1.0 } else { 0.0 }; n]
            } else if name.ends_with("running_var") || name.ends_with(".weight") {
                (0..n).map(|_| (0.5 + rng.random::<f64>()) as f32).collect()
            } else {
                (0..n).map(|_| normal(0.1)).collect()
            };
            (name, HostTensor { shape, values })
        })
        .collect()
}

/// A zoo network with its weights.
pub struct ZooModel {
    /// Which architecture.
    pub architecture: Architecture,
    /// Its configuration (classes, width).
    pub config: ZooConfig,
    network: SpecNetwork,
}

impl std::fmt::Debug for ZooModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZooModel({:?}, {:?})", self.architecture, self.config)
    }
}

impl ZooModel {
    /// Builds the network from a parameter map in torchvision naming (strict: every expected
    /// tensor present with its shape, no extra tensor; `num_batches_tracked` is ignored).
    pub fn from_parameters(
        architecture: Architecture,
        config: ZooConfig,
        params: &HashMap<String, HostTensor>,
        device: &Device,
    ) -> Result<Self> {
        let spec = architecture.describe(&config)?;
        Self::build(architecture, config, &spec, Params::Borrowed(params), device)
    }

    /// [`from_parameters`](ZooModel::from_parameters) taking the map: each tensor moves into the
    /// network, so the build holds every weight once (the borrowing form holds the caller's map
    /// and the network's copy).
    pub fn from_parameters_owned(
        architecture: Architecture,
        config: ZooConfig,
        params: HashMap<String, HostTensor>,
        device: &Device,
    ) -> Result<Self> {
        let spec = architecture.describe(&config)?;
        Self::build(architecture, config, &spec, Params::Owned(params.into()), device)
    }

    /// Loads weights from a `.pth`/`.pt` torchvision checkpoint or a `.safetensors` file; the
    /// number of classes is read from the classifier's shape.
    pub fn load(architecture: Architecture, path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let params = load_parameters(path)?;
        let config = architecture.infer_config(&params)?;
        Self::from_parameters_owned(architecture, config, params, device)
    }

    /// A network with random weights from [`random_parameters`] (BatchNorm as identity),
    /// deterministic in `seed`: for benchmarks and tests.
    pub fn random(architecture: Architecture, config: ZooConfig, seed: u64, device: &Device) -> Result<Self> {
        let spec = architecture.describe(&config)?;
        let params = random_parameters(&spec, seed, false);
        Self::build(architecture, config, &spec, Params::Owned(params.into()), device)
    }

    /// The network of `spec` (made by `architecture.describe(&config)`, which validated it) from
    /// `params`, checked strictly against it first.
    fn build(
        architecture: Architecture,
        config: ZooConfig,
        spec: &crate::spec::NetworkDesc,
        params: Params<'_>,
        device: &Device,
    ) -> Result<Self> {
        match &params {
            Params::Borrowed(map) => weights::check_strict(spec, map)?,
            Params::Owned(map) => weights::check_strict(spec, &map.borrow())?,
        }
        let network = SpecNetwork::from_valid_desc(spec, &params, "", device)?;
        Ok(Self { architecture, config, network })
    }

    /// The underlying network.
    pub fn network(&self) -> &SpecNetwork {
        &self.network
    }

    /// The input layer's name (`features.0` or `conv1`).
    pub fn input_layer(&self) -> &'static str {
        self.architecture.input_layer()
    }

    /// The output layer's name (`classifier.6`, `fc` or `classifier.1`).
    pub fn output_layer(&self) -> &'static str {
        self.architecture.output_layer()
    }

    /// A preset composite by name (see [`RULE_NAMES`]) with this model's layer roles named.
    ///
    /// - `rap`: [`Composite::rap`]
    /// - `lrp-a1b0`, `lrp-a2b1`: [`Composite::lrp_alpha_beta`] (Z^β at the input)
    /// - `lrp-eps`: LRP-ε (1e-6) with Z^β on the ImageNet pixel box at the input
    /// - `epsilon-plus`, `epsilon-plus-flat`, `epsilon-alpha2-beta1`, `epsilon-alpha2-beta1-flat`:
    ///   Zennit 0.5.1's composites ([`Composite::zennit_epsilon_plus`] and its siblings)
    /// - `epsilon-gamma-box`: [`Composite::zennit_epsilon_gamma_box`] on the ImageNet pixel box
    ///   (the normalised 0 and 1 of each channel)
    pub fn composite(&self, rule: &str) -> Result<Composite> {
        let c = rule_preset(rule)?;
        Ok(c.with_input_layers([self.input_layer()]).with_output_layers([self.output_layer()]))
    }
}

impl Explain for ZooModel {
    fn trace<'m>(&'m self, tracer: &mut Tracer<'m>, input: Node) -> Result<Node> {
        self.network.trace(tracer, input)
    }
}
