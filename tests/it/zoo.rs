//! The model zoo: the bundled SqueezeNet on a real photo, and torchvision-named checkpoints of
//! VGG-16, ResNet-18 and ResNet-50 written by the tests and loaded through the user's path.

use crate::common;
use crate::common::pth;

use common::Rng;
use rap_attrib::burn::tensor::Device;
use rap_attrib::imaging::load_imagenet;
use rap_attrib::kit::{sample_sums, to_vec};
use rap_attrib::layers::LayerType;
use rap_attrib::spec::HostTensor;
use rap_attrib::zoo::{Architecture, RULE_NAMES, ZooConfig, ZooModel, load_parameters, random_parameters};
use rap_attrib::{AttribError, Explainer, Target};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled photos (copies of `../shared/images`).
fn shared() -> PathBuf {
    manifest().join("assets")
}

#[test]
fn bundled_squeezenet_classifies_chelsea_as_the_model_readme_says() {
    let device = Device::flex();
    let model = ZooModel::load(
        Architecture::SqueezeNet1_1,
        manifest().join("assets/models/squeezenet1_1.safetensors"),
        &device,
    )
    .unwrap();
    assert_eq!(model.config, ZooConfig::new(1000, 1));
    let (_, x) = load_imagenet(shared().join("images/chelsea.png"), 224, &device).unwrap();
    let logits = to_vec(&Explainer::new(&model, model.composite("rap").unwrap()).forward(x).unwrap());
    let mut order: Vec<usize> = (0..1000).collect();
    order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    // From shared/models/README.md.
    let want: [(usize, f64); 5] = [(285, 31.97400), (282, 31.01581), (281, 30.24435), (287, 26.20457), (293, 24.71126)];
    for (rank, (class, logit)) in want.iter().enumerate() {
        assert_eq!(order[rank], *class, "rank {rank}");
        let got = logits[*class] as f64;
        assert!(((got - logit) / logit).abs() <= 1e-4, "class {class}: logit {got} vs {logit}");
    }
}

/// Random parameters with torchvision's names and (narrowed) shapes for an architecture.
fn random_checkpoint(arch: Architecture, config: ZooConfig, seed: u64) -> HashMap<String, HostTensor> {
    random_parameters(&arch.describe(&config).unwrap(), seed, true)
}

fn write_safetensors(params: &HashMap<String, HostTensor>, path: &Path) {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = params
        .iter()
        .map(|(k, t)| (k.clone(), t.values.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| {
            (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rap-attrib-zoo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn narrow_torchvision_checkpoints_load_and_explain_with_every_rule() {
    let device = Device::flex();
    for (arch, divisor, size) in
        [(Architecture::Vgg16, 16, 32), (Architecture::ResNet18, 16, 32), (Architecture::ResNet50, 16, 32)]
    {
        let config = ZooConfig::new(7, divisor);
        let params = random_checkpoint(arch, config, 42);
        let path = tmp(&format!("{}.safetensors", arch.name()));
        write_safetensors(&params, &path);
        let model = ZooModel::load(arch, &path, &device).unwrap();
        assert_eq!(model.config, config, "{arch:?}: config read from the checkpoint");
        let read_back = load_parameters(&path).unwrap();
        assert_eq!(read_back, params);
        // The same checkpoint as a torchvision .pth loads to the same tensors and model.
        let pth = tmp(&format!("{}.pth", arch.name()));
        pth::write_pth(&params, &pth);
        assert_eq!(load_parameters(&pth).unwrap(), params, "{arch:?}: .pth round trip");
        let from_pth = ZooModel::load(arch, &pth, &device).unwrap();
        assert_eq!(from_pth.config, config);
        let mut rng = Rng::new(7);
        let x =
            common::tensor4(common::random_input(&mut rng, &[0, 3, size, size], 2, false), [2, 3, size, size], &device);
        for rule in RULE_NAMES {
            let e = Explainer::new(&model, model.composite(rule).unwrap())
                .explain(x.clone(), Target::Predicted)
                .unwrap_or_else(|e| panic!("{arch:?} {rule}: {e}"));
            assert_eq!(e.relevance.dims(), [2, 3, size, size]);
            assert!(to_vec(&e.relevance).iter().all(|v| v.is_finite()), "{arch:?} {rule}");
        }
        // RAP through these torchvision structures: the input relevance is the target logit
        // minus exactly what the reference's BatchNorm drops (relevance at BN inputs that are 0,
        // which bias-free convolutions produce over dead regions).
        let e = Explainer::new(&model, model.composite("rap").unwrap())
            .record_layers(true)
            .explain(x.clone(), Target::Predicted)
            .unwrap();
        let c = e.conservation();
        let mut dropped = vec![0f32; 2];
        for l in e.layers.iter().filter(|l| l.layer_type == LayerType::BatchNorm) {
            let zero = l.activations[0].clone().equal_elem(0.0).float();
            for (d, v) in dropped.iter_mut().zip(sample_sums(&(l.output.clone() * zero))) {
                *d += v;
            }
        }
        for ((s, l), d) in c.input_sums.iter().zip(&c.target_logits).zip(&dropped) {
            // Every layer conserves to float32 rounding (checked layer by layer in the property
            // tests); over the ~170 layers of a ResNet-50 that accumulates to about 1e-3.
            assert!((s - (l - d)).abs() <= 1e-3 * l.abs().max(1e-2), "{arch:?}: Σ R = {s}, logit {l}, dropped {d}");
        }
    }
}

#[test]
fn checkpoint_problems_name_the_tensor() {
    let device = Device::flex();
    let config = ZooConfig::new(5, 16);
    let arch = Architecture::ResNet18;
    let good = random_checkpoint(arch, config, 1);
    // Missing.
    let mut p = good.clone();
    p.remove("layer2.0.downsample.1.running_var");
    let err = ZooModel::from_parameters(arch, config, &p, &device).unwrap_err();
    assert!(matches!(&err, AttribError::Weights(m) if m.contains("layer2.0.downsample.1.running_var")), "{err}");
    // Extra.
    let mut p = good.clone();
    p.insert("head.weight".into(), HostTensor { shape: vec![1], values: vec![0.0] });
    let err = ZooModel::from_parameters(arch, config, &p, &device).unwrap_err();
    assert!(matches!(&err, AttribError::Weights(m) if m.contains("head.weight")), "{err}");
    // num_batches_tracked is fine.
    let mut p = good.clone();
    p.insert("bn1.num_batches_tracked".into(), HostTensor { shape: vec![], values: vec![3.0] });
    assert!(ZooModel::from_parameters(arch, config, &p, &device).is_ok());
    // Wrong shape.
    let mut p = good.clone();
    p.get_mut("fc.weight").unwrap().shape = vec![5, 3];
    let err = ZooModel::from_parameters(arch, config, &p, &device).unwrap_err();
    assert!(matches!(&err, AttribError::Weights(m) if m.contains("fc.weight")), "{err}");
    // Weights of another model.
    let path = tmp("squeeze_as_resnet.safetensors");
    write_safetensors(&random_checkpoint(Architecture::SqueezeNet1_1, config, 2), &path);
    let err = ZooModel::load(Architecture::ResNet18, &path, &device).unwrap_err();
    assert!(
        matches!(&err, AttribError::Weights(m) if m.contains("`fc.weight`") && m.contains("not a resnet18")),
        "{err}"
    );
    // Not a weight file.
    let bad = tmp("garbage.pth");
    std::fs::write(&bad, b"definitely not a checkpoint").unwrap();
    assert!(matches!(ZooModel::load(arch, &bad, &device), Err(AttribError::Weights(_))));
    assert!(matches!(ZooModel::load(arch, tmp("absent.pth"), &device), Err(AttribError::Io { .. })));
}
