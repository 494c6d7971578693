//! The user-defined rule of `examples/custom_rule.rs` plugs into the engine and conserves.

#[path = "../../examples/custom_rule.rs"]
mod example;

use rap_attrib::burn::tensor::{Device, Tensor};
use rap_attrib::kit::to_vec;
use rap_attrib::{Explainer, Target};

#[test]
fn the_w_square_rule_runs_and_conserves_at_its_layer() {
    let device = Device::flex();
    let model = example::Mlp::new(&device);
    let x = Tensor::<2>::from_data([[0.3, -1.2, 0.8, 0.1, 2.0], [1.0, 0.5, -0.2, 0.0, 0.7]], &device);
    let e = Explainer::new(&model, example::composite()).record_layers(true).explain(x, Target::Predicted).unwrap();
    let fc1 = e.layer("fc1").unwrap();
    assert_eq!(fc1.rule.as_deref(), Some("w²"));
    // w² conserves exactly (every output has a nonzero weight).
    let out = rap_attrib::kit::sample_sums(&fc1.output);
    let inp = rap_attrib::kit::sample_sums(&fc1.inputs[0]);
    for (a, b) in out.iter().zip(&inp) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-6), "{a} vs {b}");
    }
    // And it does not depend on the input values: the share of input i is Σ_j w_ji²/Σ w_j·² R_j.
    let rel = to_vec(&e.relevance);
    assert!(rel.iter().all(|v| v.is_finite()));
    assert!(rel[3] != 0.0, "an input of value 0 still gets a w² share");
}
