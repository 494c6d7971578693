//! The typed network description: every golden sidecar and every zoo architecture parses into
//! one `NetworkDesc`, survives a JSON round trip unchanged, and names the layer and the field of
//! anything it refuses.

use crate::common;
use rap_attrib::AttribError;
use rap_attrib::spec::{LayerDesc, NetworkDesc, Pair};

fn sidecars() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in ["golden", "golden_zennit"] {
        for entry in std::fs::read_dir(common::data().join(dir)).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_golden_sidecar_parses_and_round_trips() {
    let files = sidecars();
    assert!(files.len() >= 5, "{files:?}");
    let mut described = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let root: serde_json::Value = serde_json::from_str(&text).unwrap();
        if root.get("layers").is_none() {
            continue;
        }
        let desc = NetworkDesc::from_value(&root).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(desc.layers.len(), root["layers"].as_array().unwrap().len());
        let again = NetworkDesc::from_json(&desc.to_json()).unwrap();
        assert_eq!(again, desc, "{}", f.display());
        described += 1;
    }
    assert!(described >= 5);
}

#[cfg(feature = "zoo")]
#[test]
fn every_zoo_architecture_is_a_description_that_round_trips() {
    use rap_attrib::zoo::{Architecture, ZooConfig};
    for arch in Architecture::ALL {
        let desc = arch.describe(&ZooConfig::new(10, 8)).unwrap();
        desc.validate().unwrap();
        assert_eq!(NetworkDesc::from_json(&desc.to_json()).unwrap(), desc, "{arch:?}");
        let params = desc.parameters();
        assert!(params.contains_key(&format!("{}.weight", arch.input_layer())), "{arch:?}");
        assert_eq!(params[&format!("{}.weight", arch.output_layer())][0], 10, "{arch:?}");
    }
}

fn spec_message(json: &str) -> String {
    match NetworkDesc::from_json(json) {
        Err(AttribError::Spec(m)) => m,
        other => panic!("expected a Spec error for {json}, got {other:?}"),
    }
}

#[test]
fn refusals_name_the_layer_the_field_the_value_and_what_is_allowed() {
    let wrap = |layer: &str| format!(r#"{{"layers": [{layer}]}}"#);
    // A field of the wrong type: the layer and the field's path.
    let m =
        spec_message(&wrap(r#"{"name": "fc", "type": "Linear", "in_features": 4, "out_features": 2, "bias": "yes"}"#));
    assert!(m.contains("layer `fc`") && m.contains("`bias`") && m.contains("boolean"), "{m}");
    let m = spec_message(&wrap(r#"{"name": "fc", "type": "Linear", "in_features": -3, "out_features": 2}"#));
    assert!(m.contains("`in_features`") && m.contains("-3"), "{m}");
    let m = spec_message(&wrap(
        r#"{"name": "c", "type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 3, 3]}"#,
    ));
    assert!(m.contains("`kernel_size`") && m.contains("pair [h, w]"), "{m}");
    let m = spec_message(&wrap(r#"{"name": "c", "type": "Conv2d", "in_channels": 3, "out_channels": 4}"#));
    assert!(m.contains("layer `c`") && m.contains("kernel_size"), "{m}");
    // A value out of range: the field, the value and the range.
    let m = spec_message(&wrap(
        r#"{"name": "c", "type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}"#,
    ));
    assert!(m.contains("groups") && m.contains("divisible"), "{m}");
    let m = spec_message(&wrap(r#"{"name": "p", "type": "MaxPool2d", "kernel_size": 2, "padding": 2}"#));
    assert!(m.contains("`padding` = [2, 2]") && m.contains("half the kernel"), "{m}");
    let m = spec_message(&wrap(r#"{"name": "d", "type": "Dropout", "p": 1.5}"#));
    assert!(m.contains("`p` = 1.5") && m.contains("[0, 1)"), "{m}");
    // An unknown type is an unsupported layer naming it.
    match NetworkDesc::from_json(&wrap(r#"{"name": "g", "type": "GELU"}"#)) {
        Err(AttribError::UnsupportedLayer { layer, layer_type, .. }) => {
            assert_eq!((layer.as_str(), layer_type.as_str()), ("g", "GELU"))
        }
        other => panic!("{other:?}"),
    }
    // Null means the default, as before.
    let d =
        NetworkDesc::from_json(&wrap(r#"{"name": "p", "type": "MaxPool2d", "kernel_size": [2, 3], "stride": null}"#))
            .unwrap();
    match &d.layers[0] {
        LayerDesc::MaxPool2d(p) => {
            assert_eq!(p.kernel_size, Pair::Each([2, 3]));
            assert_eq!(p.stride, None);
        }
        other => panic!("{other:?}"),
    }
}
