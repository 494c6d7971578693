//! Make your own `#[derive(Module)]` network explainable by implementing one trait.
//!
//! Run: `cargo run --example custom_model`

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Distribution, Tensor};
use rap_attrib::{Composite, Explain, Explainer, Node, Result, Target, Tracer};

/// An ordinary Burn model: nothing about explanations in it.
#[derive(Module, Debug)]
pub struct SmallCnn {
    conv1: Conv2d,
    bn1: BatchNorm,
    relu: Relu,
    pool: MaxPool2d,
    conv2: Conv2d,
    gap: AdaptiveAvgPool2d,
    fc: Linear,
}

impl SmallCnn {
    /// Random weights.
    pub fn new(device: &Device) -> Self {
        SmallCnn {
            conv1: Conv2dConfig::new([3, 8], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device),
            bn1: BatchNormConfig::new(8).init(device),
            relu: Relu::new(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            conv2: Conv2dConfig::new([8, 16], [3, 3]).init(device),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(16, 10).init(device),
        }
    }

    /// The usual forward pass, unchanged.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.relu.forward(self.bn1.forward(self.conv1.forward(x)));
        let x = self.relu.forward(self.conv2.forward(self.pool.forward(x)));
        let [b, c, _, _] = x.dims();
        self.fc.forward(self.gap.forward(x).reshape([b, c]))
    }
}

/// The one addition: the same forward pass, through the tracer. A layer used twice (here the
/// ReLU) is simply recorded twice under two names.
impl Explain for SmallCnn {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> Result<Node> {
        let x = t.layer("conv1", &self.conv1, x)?;
        let x = t.layer("bn1", &self.bn1, x)?;
        let x = t.layer("relu1", &self.relu, x)?;
        let x = t.layer("pool", &self.pool, x)?;
        let x = t.layer("conv2", &self.conv2, x)?;
        let x = t.layer("relu2", &self.relu, x)?;
        let x = t.layer("gap", &self.gap, x)?;
        let x = t.flatten("flatten", x)?;
        t.layer("fc", &self.fc, x)
    }
}

fn main() -> Result<()> {
    let device = Device::flex();
    let model = SmallCnn::new(&device);
    let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let explainer = Explainer::new(&model, Composite::rap()).record_layers(true);
    // One call checks that the trace computes what `forward` computes (else a typed error
    // naming the first layer where they part).
    let worst = explainer.check_trace(x.clone(), model.forward(x.clone()), 1e-5)?;
    println!("the trace equals the model's forward: max |Δ| / max(1, max|logit|) = {worst:e}");
    let e = explainer.explain(x, Target::Predicted)?;
    let report = e.conservation();
    println!("targets {:?}, target logits {:?}", e.targets, report.target_logits);
    for (name, sums) in &report.layers {
        println!("{name:>8}: Σ R = {sums:?}");
    }
    println!("input:    Σ R = {:?}", report.input_sums);
    Ok(())
}
