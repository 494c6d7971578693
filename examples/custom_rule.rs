//! A rule of your own: the w² rule (Montavon et al.), in a few lines.
//!
//! `R_i = Σ_j w_ji² / Σ_i' w_ji'² · R_j`: inputs set to one, weights squared, no bias. It
//! conserves `Σ R` wherever a receptive field has a nonzero weight.
//!
//! Run: `cargo run --example custom_rule`

use rap_attrib::burn::nn::{LinearConfig, Relu};
use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::rules::{Stabilizer, z_step};
use rap_attrib::{Composite, Explain, Explainer, LinearLayer, Node, Rule, RuleContext, Selector, Target, Tracer};

/// The w² rule.
#[derive(Debug, Clone, Copy)]
pub struct WSquare;

impl Rule for WSquare {
    fn name(&self) -> String {
        "w²".into()
    }

    fn relevance(
        &self,
        layer: &dyn LinearLayer,
        x: &Tensor<4>,
        r: Tensor<4>,
        _: &RuleContext,
    ) -> rap_attrib::Result<Tensor<4>> {
        let w2 = layer.weight().powi_scalar(2);
        Ok(z_step(layer, x.ones_like(), &w2, None, r, Stabilizer::Safe))
    }
}

/// A two-layer network to try it on.
pub struct Mlp {
    fc1: rap_attrib::burn::nn::Linear,
    act: Relu,
    fc2: rap_attrib::burn::nn::Linear,
}

impl Mlp {
    /// Random weights.
    pub fn new(device: &Device) -> Self {
        Mlp { fc1: LinearConfig::new(5, 8).init(device), act: Relu::new(), fc2: LinearConfig::new(8, 3).init(device) }
    }
}

impl Explain for Mlp {
    fn trace<'m>(&'m self, t: &mut Tracer<'m>, x: Node) -> rap_attrib::Result<Node> {
        let x = t.layer("fc1", &self.fc1, x)?;
        let x = t.layer("act", &self.act, x)?;
        t.layer("fc2", &self.fc2, x)
    }
}

/// w² at the input layer, LRP-ε elsewhere.
pub fn composite() -> Composite {
    Composite::new().with(Selector::InputLayer, WSquare).with(Selector::Any, rap_attrib::rules::Epsilon::default())
}

#[allow(dead_code)]
fn main() -> rap_attrib::Result<()> {
    let device = Device::flex();
    let model = Mlp::new(&device);
    let x = Tensor::<2>::from_data([[0.3, -1.2, 0.8, 0.1, 2.0]], &device);
    let e = Explainer::new(&model, composite()).record_layers(true).explain(x, Target::Predicted)?;
    println!("input relevance: {}", e.relevance);
    for (name, sums) in e.conservation().layers {
        println!("{name:>4}: Σ R = {sums:?}");
    }
    Ok(())
}
