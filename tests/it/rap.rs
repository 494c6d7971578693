//! RAP beyond the reference: explicit roles, BasicBlock ResNets, and the exact amounts where
//! the reference's rule loses or doubles relevance.

use crate::common;

use common::{Rng, device, random_input, tensor2, tensor4};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::kit::{sample_sums, to_vec};
use rap_attrib::layers::LayerType;
use rap_attrib::spec::{HostTensor, SpecNetwork};
use rap_attrib::{Composite, Explainer, Target};
use serde_json::json;
use std::collections::HashMap;

fn random_params(spec: &serde_json::Value, seed: u64, bias: bool) -> HashMap<String, HostTensor> {
    let mut rng = Rng::new(seed);
    let mut p = HashMap::new();
    let mut put = |name: String, shape: Vec<usize>, f: &mut dyn FnMut(&mut Rng) -> f64, rng: &mut Rng| {
        let n = shape.iter().product();
        p.insert(name, HostTensor { shape, values: (0..n).map(|_| f(rng) as f32).collect() });
    };
    for l in spec["layers"].as_array().unwrap() {
        let name = l["name"].as_str().unwrap();
        match l["type"].as_str().unwrap() {
            "Conv2d" => {
                let (ci, co) =
                    (l["in_channels"].as_u64().unwrap() as usize, l["out_channels"].as_u64().unwrap() as usize);
                let k = l["kernel_size"][0].as_u64().unwrap() as usize;
                let s = (2.0 / (ci * k * k) as f64).sqrt();
                put(format!("{name}.weight"), vec![co, ci, k, k], &mut |r| r.normal() * s, &mut rng);
                if bias {
                    put(format!("{name}.bias"), vec![co], &mut |r| r.normal() * 0.1, &mut rng);
                }
            }
            "Linear" => {
                let (fi, fo) =
                    (l["in_features"].as_u64().unwrap() as usize, l["out_features"].as_u64().unwrap() as usize);
                let s = (2.0 / fi as f64).sqrt();
                put(format!("{name}.weight"), vec![fo, fi], &mut |r| r.normal() * s, &mut rng);
                put(format!("{name}.bias"), vec![fo], &mut |r| r.normal() * 0.1, &mut rng);
            }
            "BatchNorm2d" => {
                let c = l["num_features"].as_u64().unwrap() as usize;
                put(format!("{name}.weight"), vec![c], &mut |r| 0.5 + r.unit(), &mut rng);
                put(format!("{name}.bias"), vec![c], &mut |r| r.normal() * 0.2, &mut rng);
                put(format!("{name}.running_mean"), vec![c], &mut |r| r.normal() * 0.3, &mut rng);
                put(format!("{name}.running_var"), vec![c], &mut |r| 0.5 + 1.5 * r.unit(), &mut rng);
            }
            _ => {}
        }
    }
    p
}

fn conv(name: &str, ci: usize, co: usize, k: usize, s: usize, p: usize, bias: bool) -> serde_json::Value {
    json!({"name": name, "type": "Conv2d", "in_channels": ci, "out_channels": co, "kernel_size": [k, k],
           "stride": [s, s], "padding": [p, p], "bias": bias})
}

fn bn(name: &str, c: usize) -> serde_json::Value {
    json!({"name": name, "type": "BatchNorm2d", "num_features": c, "eps": 1e-5})
}

fn basic_block(layers: &mut Vec<serde_json::Value>, name: &str, ci: usize, co: usize, stride: usize) {
    let ds = stride != 1 || ci != co;
    layers.push(json!({"name": name, "type": "BasicBlock", "stride": stride, "has_downsample": ds}));
    layers.push(conv(&format!("{name}.conv1"), ci, co, 3, stride, 1, false));
    layers.push(bn(&format!("{name}.bn1"), co));
    layers.push(json!({"name": format!("{name}.relu1"), "type": "ReLU"}));
    layers.push(conv(&format!("{name}.conv2"), co, co, 3, 1, 1, false));
    layers.push(bn(&format!("{name}.bn2"), co));
    if ds {
        layers.push(conv(&format!("{name}.downsample.0"), ci, co, 1, stride, 0, false));
        layers.push(bn(&format!("{name}.downsample.1"), co));
    }
    layers.push(json!({"name": format!("{name}.add"), "type": "Add"}));
    layers.push(json!({"name": format!("{name}.relu2"), "type": "ReLU"}));
}

/// A ResNet-18-shaped network (stem, max pool, BasicBlocks with and without downsampling).
fn resnet_basic() -> serde_json::Value {
    let mut layers = vec![
        conv("conv1", 3, 8, 3, 1, 1, false),
        bn("bn1", 8),
        json!({"name": "relu", "type": "ReLU"}),
        json!({"name": "maxpool", "type": "MaxPool2d", "kernel_size": 3, "stride": 2, "padding": 1}),
    ];
    basic_block(&mut layers, "layer1.0", 8, 8, 1);
    basic_block(&mut layers, "layer1.1", 8, 8, 1);
    basic_block(&mut layers, "layer2.0", 8, 16, 2);
    layers.push(json!({"name": "avgpool", "type": "AdaptiveAvgPool2d", "output_size": [1, 1]}));
    layers.push(json!({"name": "fc", "type": "Linear", "in_features": 16, "out_features": 10, "bias": true}));
    json!({"layers": layers, "input_shape": [1, 3, 16, 16]})
}

#[test]
fn basic_block_resnets_explain_and_conserve() {
    let d = device();
    let spec = resnet_basic();
    for seed in 0..8 {
        let params = random_params(&spec, seed, false);
        let net = SpecNetwork::from_value(&spec, &params, "", &d).unwrap();
        let mut rng = Rng::new(seed + 100);
        let x = tensor4(random_input(&mut rng, &[0, 3, 16, 16], 3, false), [3, 3, 16, 16], &d);
        let e = Explainer::new(&net, Composite::rap()).explain(x, Target::Predicted).unwrap();
        let c = e.conservation();
        // Documented: the input relevance sums to the target logit (Eq. 5–6 at fc, every middle
        // layer conserving), up to the BatchNorm zero-input loss (none here: bias-free convs on
        // random data give no exact zeros) and float32 rounding.
        for (s, l) in c.input_sums.iter().zip(&c.target_logits) {
            assert!((s - l).abs() <= 1e-4 * l.abs().max(1e-3), "seed {seed}: Σ R_in = {s}, logit {l}");
        }
        // Each block's two branches add up at its input.
        let e = Explainer::new(&net, Composite::rap())
            .record_layers(true)
            .explain(tensor4(random_input(&mut rng, &[0, 3, 16, 16], 1, false), [1, 3, 16, 16], &d), Target::Predicted);
        let e = e.unwrap();
        let block_in = e.at("layer2.0").unwrap();
        let via_main = e.at("layer2.0.conv1").unwrap();
        let via_short = e.at("layer2.0.downsample.0").unwrap();
        let diff = to_vec(&(block_in - via_main - via_short).abs());
        assert!(diff.iter().all(|v| *v < 1e-6));
    }
}

#[test]
fn mixed_sign_input_to_a_middle_layer_returns_twice_the_relevance() {
    // The reference's rule on a Linear fed raw data of both signs: each branch (x⁺, x⁻)
    // conserves ΣR, so the layer returns exactly 2ΣR (golden case A shows the same).
    let d = device();
    let spec = json!({"input_shape": [1, 6], "layers": [
        {"name": "fc1", "type": "Linear", "in_features": 6, "out_features": 8, "bias": true},
        {"name": "relu", "type": "ReLU"},
        {"name": "fc2", "type": "Linear", "in_features": 8, "out_features": 3, "bias": true}]});
    let params = random_params(&spec, 5, true);
    let net = SpecNetwork::from_value(&spec, &params, "", &d).unwrap();
    let x = tensor2(vec![0.5, -1.0, 2.0, -0.3, 1.2, -0.8], [1, 6], &d);
    let e = Explainer::new(&net, Composite::rap()).record_layers(true).explain(x, Target::Predicted).unwrap();
    let c = e.conservation();
    let fc1_out = sample_sums(&e.layer("fc1").unwrap().output)[0];
    assert!((c.input_sums[0] - 2.0 * fc1_out).abs() <= 1e-5 * fc1_out.abs(), "{} vs 2 × {fc1_out}", c.input_sums[0]);
    // The same input made non-negative conserves.
    let x = tensor2(vec![0.5, 1.0, 2.0, 0.3, 1.2, 0.8], [1, 6], &d);
    let e = Explainer::new(&net, Composite::rap()).record_layers(true).explain(x, Target::Predicted).unwrap();
    let fc1_out = sample_sums(&e.layer("fc1").unwrap().output)[0];
    assert!((e.conservation().input_sums[0] - fc1_out).abs() <= 1e-5 * fc1_out.abs());
}

#[test]
fn batch_norm_drops_exactly_the_relevance_at_zero_inputs() {
    // A bias-free conv on an input that is zero on its left half gives a BatchNorm input that is
    // exactly 0 there; RAP's BatchNorm (the reference's) drops exactly the relevance there.
    let d = device();
    let spec = json!({"input_shape": [1, 3, 8, 8], "layers": [
        conv("conv1", 3, 4, 1, 1, 0, false), bn("bn1", 4), {"name": "relu", "type": "ReLU"},
        conv("conv2", 4, 4, 3, 1, 1, true), {"name": "relu2", "type": "ReLU"},
        {"name": "avgpool", "type": "AdaptiveAvgPool2d", "output_size": 1},
        {"name": "fc", "type": "Linear", "in_features": 4, "out_features": 3, "bias": true}]});
    let params = random_params(&spec, 9, true);
    let net = SpecNetwork::from_value(&spec, &params, "", &d).unwrap();
    let mut rng = Rng::new(3);
    let mut v = random_input(&mut rng, &[0, 3, 8, 8], 1, false);
    for c in 0..3 {
        for h in 0..8 {
            for w in 0..4 {
                v[c * 64 + h * 8 + w] = 0.0;
            }
        }
    }
    let x = tensor4(v, [1, 3, 8, 8], &d);
    let e = Explainer::new(&net, Composite::rap()).record_layers(true).explain(x, Target::Predicted).unwrap();
    let bn = e.layer("bn1").unwrap();
    assert_eq!(bn.layer_type, LayerType::BatchNorm);
    let zero = bn.activations[0].clone().equal_elem(0.0).float();
    let lost = sample_sums(&(bn.output.clone() * zero))[0];
    let out = sample_sums(&bn.output)[0];
    let inp = sample_sums(&bn.inputs[0])[0];
    assert!(lost.abs() > 1e-3 * out.abs(), "the test must exercise the loss: lost {lost} of {out}");
    assert!((out - inp - lost).abs() <= 1e-5 * out.abs(), "BN: in {inp}, out {out}, lost {lost}");
}

#[test]
fn layer_roles_are_explicit() {
    let d = device();
    let spec = json!({"input_shape": [1, 5], "layers": [
        {"name": "fc1", "type": "Linear", "in_features": 5, "out_features": 6, "bias": true},
        {"name": "relu", "type": "ReLU"},
        {"name": "fc2", "type": "Linear", "in_features": 6, "out_features": 3, "bias": true}]});
    let params = random_params(&spec, 2, true);
    let net = SpecNetwork::from_value(&spec, &params, "", &d).unwrap();
    let x = tensor2(vec![0.5, 1.0, 0.2, 0.8, 0.1], [1, 5], &d);
    // By position: fc2 is the output layer, Eq. 5–6 scale the one-hot to the logit.
    let e = Explainer::new(&net, Composite::rap()).explain(x.clone(), Target::Predicted).unwrap();
    let c = e.conservation();
    assert!((c.input_sums[0] - c.target_logits[0]).abs() <= 1e-4 * c.target_logits[0].abs());
    // Named explicitly as a layer without weights: no layer takes the output step, relevance
    // stays 1. A name the model does not have is an error, not a silent change.
    let composite = Composite::rap().with_output_layers(["relu"]);
    let e = Explainer::new(&net, composite).explain(x.clone(), Target::Predicted).unwrap();
    assert!((e.conservation().input_sums[0] - 1.0).abs() <= 1e-5);
    let unknown = Composite::rap().with_output_layers(["none"]);
    assert!(Explainer::new(&net, unknown).explain(x, Target::Predicted).is_err());
}

#[test]
fn rap_relevance_shapes_follow_the_input() {
    let d = device();
    let spec = resnet_basic();
    let params = random_params(&spec, 1, false);
    let net = SpecNetwork::from_value(&spec, &params, "", &d).unwrap();
    let x = Tensor::<4>::ones([2, 3, 16, 16], &d);
    let e = Explainer::new(&net, Composite::rap()).explain(x, Target::Classes(vec![1, 2])).unwrap();
    assert_eq!(e.relevance.dims(), [2, 3, 16, 16]);
    assert_eq!(e.heatmap().unwrap().dims(), [2, 1, 16, 16]);
    assert_eq!(e.targets, vec![1, 2]);
}
