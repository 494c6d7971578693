//! What a hostile but fair user would feed the loaders: mutated network descriptions, weight
//! files, images and evaluation datasets, driven by proptest with a fixed seed
//! (`RAP_HOSTILE_CASES` cases per loader, default 1,000). Each must give `Ok` or a typed
//! `AttribError`, never a panic (proptest reports one as a failure), an abort or a hang; the
//! tensor budget is lowered to 2²⁴ elements so that a size check that is missing shows up as a
//! refused allocation rather than passing by luck.
//!
//! Where the answer is known, it is checked: every strict prefix of a PNG or JPEG file is an
//! error (a truncated picture is never explained as a half-grey one), and a description with a
//! duplicate layer name is an error.

#[path = "it/common/mod.rs"]
mod common;

use common::device;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rap_attrib::evaluation::Dataset;
use rap_attrib::spec::{LAYER_TYPES, SpecNetwork, parse_safetensors, read_safetensors};
use rap_attrib::zoo::load_parameters;
use rap_attrib::{AttribError, Composite, Explainer, Target};
use serde_json::{Value, json};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use common::pth;

fn cases() -> u32 {
    std::env::var("RAP_HOSTILE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

fn runner() -> TestRunner {
    rap_attrib::limits::set_max_tensor_elements(1 << 24);
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

fn shared() -> PathBuf {
    common::data()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rap-attrib-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Values a hostile description puts in a field.
fn hostile_value(k: usize) -> Value {
    let values = [
        json!(0),
        json!(1),
        json!(-1),
        json!(65537),
        json!(1u64 << 31),
        json!(u64::MAX),
        json!(1e300),
        json!(-0.5),
        json!(0.5),
        json!(1.0),
        json!(1.5),
        json!("3"),
        json!(true),
        Value::Null,
        json!([]),
        json!([0, 0]),
        json!([3, 1u64 << 40]),
        json!([1, 2, 3]),
        json!({}),
        json!("Conv2d"),
    ];
    values[k % values.len()].clone()
}

const FIELDS: [&str; 22] = [
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "in_features",
    "out_features",
    "num_features",
    "eps",
    "p",
    "output_size",
    "ceil_mode",
    "count_include_pad",
    "type",
    "name",
    "has_downsample",
    "layers",
    "input_shape",
    "weight_layout",
];

/// A mutated copy of a sidecar: `kind` picks the mutation, the other numbers where and what.
fn mutate_description(base: &Value, kind: usize, at: usize, field: usize, value: usize) -> Value {
    let mut v = base.clone();
    let Some(layers) = v.get_mut("layers").and_then(Value::as_array_mut) else { return v };
    let n = layers.len();
    let i = at % n;
    match kind % 6 {
        // A field set to a hostile value.
        0 | 1 => {
            let f = FIELDS[field % FIELDS.len()];
            if f == "layers" || f == "input_shape" {
                v[f] = hostile_value(value);
            } else if let Some(obj) = layers[i].as_object_mut() {
                obj.insert(f.to_string(), hostile_value(value));
            }
        }
        // A field removed.
        2 => {
            if let Some(obj) = layers[i].as_object_mut() {
                obj.remove(FIELDS[field % FIELDS.len()]);
            }
        }
        // A layer duplicated (same name twice).
        3 => {
            let copy = layers[i].clone();
            layers.insert((i + value) % (n + 1), copy);
        }
        // A layer removed, or two swapped.
        4 => {
            if value.is_multiple_of(2) {
                layers.remove(i);
            } else {
                layers.swap(i, field % n);
            }
        }
        // A layer's type changed.
        _ => {
            layers[i]["type"] = json!(LAYER_TYPES[value % LAYER_TYPES.len()]);
        }
    }
    v
}

#[test]
fn mutated_network_descriptions_give_a_network_or_a_typed_error() {
    let device = device();
    let dir = shared().join("golden");
    let bases: Vec<(Value, std::collections::HashMap<String, rap_attrib::spec::HostTensor>)> =
        ["case_a_mlp", "case_b_vgg", "case_d_bottleneck"]
            .iter()
            .map(|c| {
                let text = std::fs::read_to_string(dir.join(format!("{c}.json"))).unwrap();
                (serde_json::from_str(&text).unwrap(), read_safetensors(dir.join(format!("{c}.safetensors"))).unwrap())
            })
            .collect();
    let (built, refused, explained) = (Cell::new(0), Cell::new(0), Cell::new(0));
    runner()
        .run(&(0usize..3, 0usize..6, 0usize..64, 0usize..64, 0usize..64), |(case, kind, at, field, value)| {
            let (base, params) = &bases[case];
            let v = mutate_description(base, kind, at, field, value);
            let duplicate = v["layers"].as_array().is_some_and(|l| {
                let names: Vec<&str> = l.iter().filter_map(|x| x["name"].as_str()).collect();
                (1..names.len()).any(|k| names[..k].contains(&names[k]))
            });
            match SpecNetwork::from_value(&v, params, "param.", &device) {
                Err(_) => refused.set(refused.get() + 1),
                Ok(net) => {
                    prop_assert!(!duplicate, "a description with a duplicate layer name was accepted");
                    built.set(built.get() + 1);
                    let input = &params["input"];
                    let composite =
                        if value.is_multiple_of(2) { Composite::rap() } else { Composite::zennit_epsilon_plus() };
                    let explainer = Explainer::new(&net, composite);
                    let out = if input.shape.len() == 4 {
                        let x = input.to_tensor::<4>("input", &device).unwrap();
                        explainer.explain(x, Target::Predicted).map(|e| e.relevance.dims().to_vec())
                    } else {
                        let x = input.to_tensor::<2>("input", &device).unwrap();
                        explainer.explain(x, Target::Predicted).map(|e| e.relevance.dims().to_vec())
                    };
                    if out.is_ok() {
                        explained.set(explained.get() + 1);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let (built, refused, explained) = (built.get(), refused.get(), explained.get());
    println!("descriptions: {built} built ({explained} explained), {refused} refused");
    assert!(built > 0 && refused > 0, "the mutations should both keep and break descriptions");
}

/// A mutated copy of a file's bytes.
fn mutate_bytes(base: &[u8], kind: usize, at: usize, value: u8, len: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    let n = b.len().max(1);
    let i = at % n;
    match kind % 6 {
        0 => b.truncate(i),
        1 => {
            if let Some(x) = b.get_mut(i) {
                *x ^= value.max(1);
            }
        }
        2 => {
            let end = (i + len % 64).min(b.len());
            b[i..end].fill(value);
        }
        3 => {
            let insert: Vec<u8> = (0..len % 64).map(|k| value.wrapping_add(k as u8)).collect();
            b.splice(i..i, insert);
        }
        4 => {
            // The first 8 bytes (a safetensors header length, a PNG signature) set to a value.
            let x = (value as u64).wrapping_mul(0x0101_0101_0101_0101) >> (len % 64);
            for (k, byte) in x.to_le_bytes().iter().enumerate() {
                if let Some(y) = b.get_mut(k) {
                    *y = *byte;
                }
            }
        }
        _ => {
            // A run of bytes in the first 256 (headers) flipped.
            for k in 0..(len % 16) {
                if let Some(x) = b.get_mut((i + k * 7) % 256.min(n)) {
                    *x = x.wrapping_add(value);
                }
            }
        }
    }
    b
}

fn is_typed(e: &AttribError) -> bool {
    !e.to_string().is_empty()
}

#[test]
fn mutated_weight_files_give_tensors_or_a_typed_error() {
    let base = std::fs::read(shared().join("golden/case_a_mlp.safetensors")).unwrap();
    let params = read_safetensors(shared().join("golden/case_a_mlp.safetensors")).unwrap();
    // A small torchvision-style .pth of the same tensors.
    let pth_path = tmp("base.pth");
    let small: std::collections::HashMap<_, _> =
        params.iter().filter(|(k, _)| k.starts_with("param.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    pth::write_pth(&small, &pth_path);
    let pth_base = std::fs::read(&pth_path).unwrap();
    let mutated_pth = tmp("mutated.pth");
    let (ok, err) = (Cell::new(0), Cell::new(0));
    runner()
        .run(
            &(any::<bool>(), 0usize..6, any::<usize>(), any::<u8>(), any::<usize>()),
            |(pth_file, kind, at, value, len)| {
                let result = if pth_file {
                    std::fs::write(&mutated_pth, mutate_bytes(&pth_base, kind, at, value, len)).unwrap();
                    load_parameters(&mutated_pth).map(|p| p.len())
                } else {
                    parse_safetensors(&mutate_bytes(&base, kind, at, value, len)).map(|p| p.len())
                };
                match result {
                    Ok(_) => ok.set(ok.get() + 1),
                    Err(e) => {
                        prop_assert!(is_typed(&e));
                        err.set(err.get() + 1);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    let (ok, err) = (ok.get(), err.get());
    println!("weight files: {ok} read, {err} refused");
    assert!(err > 0);
}

/// A small photo as PNG and JPEG bytes.
fn small_images() -> (Vec<u8>, Vec<u8>) {
    let img = image::RgbImage::from_fn(37, 23, |x, y| image::Rgb([(x * 7) as u8, (y * 11) as u8, ((x + y) * 3) as u8]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut jpg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
        .unwrap();
    (png, jpg)
}

#[test]
fn mutated_images_decode_or_give_a_typed_error_and_truncated_ones_never_decode() {
    let (png, jpg) = small_images();
    let (ok, err) = (Cell::new(0), Cell::new(0));
    runner()
        .run(
            &(any::<bool>(), 0usize..6, any::<usize>(), any::<u8>(), any::<usize>()),
            |(is_png, kind, at, value, len)| {
                let base = if is_png { &png } else { &jpg };
                let bytes = mutate_bytes(base, kind, at, value, len);
                let truncated = kind % 6 == 0 && bytes.len() < base.len();
                match rap_attrib::imaging::decode_rgb(&bytes) {
                    Ok(img) => {
                        prop_assert!(
                            !truncated,
                            "a {}-byte prefix of a {}-byte picture decoded",
                            bytes.len(),
                            base.len()
                        );
                        prop_assert!(img.width() > 0 && img.height() > 0);
                        ok.set(ok.get() + 1);
                    }
                    Err(_) => err.set(err.get() + 1),
                }
                Ok(())
            },
        )
        .unwrap();
    let (ok, err) = (ok.get(), err.get());
    println!("images: {ok} decoded, {err} refused");
    // Every strict prefix, exhaustively for the JPEG's last 64 bytes and the PNG's last 64.
    for base in [&png, &jpg] {
        for cut in base.len().saturating_sub(64)..base.len() {
            assert!(rap_attrib::imaging::decode_rgb(&base[..cut]).is_err(), "a {cut}-byte prefix decoded");
        }
    }
    // A picture claiming to be huge is refused before it is decoded.
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    assert!(rap_attrib::imaging::decode_rgb(&huge).is_err());
}

/// Writes a dataset directory with one photo and its ground truth, mutated.
fn write_dataset(dir: &Path, photo: &[u8], manifest: bool, truth: &Value, mask: Option<&[u8]>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    if manifest {
        std::fs::write(dir.join("rgb.png"), photo).unwrap();
        std::fs::write(dir.join("labels.json"), truth.to_string()).unwrap();
        if let Some(m) = mask {
            std::fs::write(dir.join("mask_00.png"), m).unwrap();
        }
    } else {
        std::fs::write(dir.join("cat.png"), photo).unwrap();
        std::fs::write(dir.join("cat.json"), truth.to_string()).unwrap();
        if let Some(m) = mask {
            std::fs::write(dir.join("cat.mask.png"), m).unwrap();
        }
    }
}

#[test]
fn mutated_evaluation_datasets_load_or_give_a_typed_error() {
    let (png, _) = small_images();
    let mask = {
        let img = image::GrayImage::from_fn(37, 23, |x, _| image::Luma([if x < 10 { 255 } else { 0 }]));
        let mut b = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut std::io::Cursor::new(&mut b), image::ImageFormat::Png)
            .unwrap();
        b
    };
    let dir = tmp("dataset");
    let (ok, err) = (Cell::new(0), Cell::new(0));
    runner()
        .run(
            &(any::<bool>(), 0usize..8, 0usize..64, any::<u8>(), any::<usize>()),
            |(manifest, kind, value, byte, at)| {
                let hostile = hostile_value(value);
                let mut truth = if manifest {
                    json!({"image": "rgb.png", "instances": [{"mask": "mask_00.png", "bbox_xyxy": [1, 2, 30, 20]}], "label": 3})
                } else {
                    json!({"boxes": [[1, 2, 30, 20]], "label": 3})
                };
                let (mut photo, mut m) = (png.clone(), Some(mask.clone()));
                match kind {
                    0 => truth["label"] = hostile,
                    1 if manifest => truth["instances"][0]["bbox_xyxy"] = hostile,
                    1 => truth["boxes"] = json!([hostile]),
                    2 if manifest => truth["instances"] = hostile,
                    2 => truth["boxes"] = hostile,
                    3 if manifest => truth["image"] = hostile,
                    3 => truth["boxes"][0][value % 4] = hostile,
                    4 => photo = mutate_bytes(&png, at, at / 7, byte, at / 3),
                    5 => m = Some(mutate_bytes(&mask, at, at / 7, byte, at / 3)),
                    6 => m = None,
                    _ => truth = hostile,
                }
                write_dataset(&dir, &photo, manifest, &truth, m.as_deref());
                match Dataset::load(&dir) {
                    Ok(d) => {
                        for s in &d.samples {
                            let _ = s.box_region().and_then(|r| r.resize(64, 64));
                            let _ = s.mask_region();
                        }
                        ok.set(ok.get() + 1);
                    }
                    Err(_) => err.set(err.get() + 1),
                }
                Ok(())
            },
        )
        .unwrap();
    let (ok, err) = (ok.get(), err.get());
    println!("datasets: {ok} loaded, {err} refused");
    assert!(ok > 0 && err > 0);
}

// The cases of issue 20, one test each: every one was a panic, a hang, an abort or a silent
// wrong answer before.

#[cfg(feature = "plots")]
#[test]
fn plots_refuse_non_finite_x_and_bad_ranges_instead_of_hanging() {
    use rap_attrib::viz::{LinePanel, plot_lines};
    let path = tmp("plot.png");
    let panel = |x: Vec<f32>, y_range: Option<(f32, f32)>| LinePanel {
        title: "t".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        series: vec![("s".into(), vec![1.0; x.len()])],
        x,
        y_range,
    };
    for (x, range, what) in [
        (vec![f32::INFINITY, 1.0], None, "an infinite x (plotters looped forever)"),
        (vec![f32::NAN, 1.0], None, "a NaN x"),
        (vec![0.0, 1.0], Some((f32::NAN, f32::NAN)), "a NaN y_range (was ignored)"),
        (vec![0.0, 1.0], Some((1.0, 0.0)), "a reversed y_range"),
        (vec![-3e38, 3e38], None, "an x span beyond f32"),
    ] {
        match plot_lines(&path, &[panel(x, range)], 1, (200, 200)) {
            Err(AttribError::InvalidParameter(m)) => assert!(m.contains("panel `t`"), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(plot_lines(&path, &[panel(vec![0.0, 1.0], Some((0.0, 2.0)))], 1, (200, 200)).is_ok());
}

#[test]
fn image_normalisation_refuses_a_zero_std() {
    let img = image::RgbImage::new(4, 4);
    let dev = device();
    for (mean, std) in [([0.0; 3], [1.0, 0.0, 1.0]), ([f32::NAN, 0.0, 0.0], [1.0; 3]), ([0.0; 3], [f32::INFINITY; 3])] {
        match rap_attrib::imaging::to_tensor(&img, mean, std, &dev) {
            Err(AttribError::InvalidParameter(m)) => assert!(m.contains("channel"), "{m}"),
            other => panic!("{mean:?} {std:?}: {other:?}"),
        }
    }
    assert!(rap_attrib::imaging::to_tensor(&img, [0.5; 3], [0.25; 3], &dev).is_ok());
}

#[test]
fn metrics_refuse_empty_or_non_finite_input_instead_of_nan() {
    use rap_attrib::metrics::{Heatmap, Order, PerturbationCurve, Threshold, segment};
    let curve = |scores: Vec<Vec<f32>>| PerturbationCurve {
        order: Order::MostRelevantFirst,
        pixels_per_step: 1,
        scores,
        correct: vec![],
    };
    for scores in [vec![vec![]], vec![], vec![vec![1.0, f32::NAN]]] {
        let c = curve(scores.clone());
        assert!(matches!(c.aopc(), Err(AttribError::InvalidParameter(_))), "{scores:?}");
        assert!(c.mean_aopc().is_err(), "{scores:?}");
    }
    assert_eq!(curve(vec![vec![2.0, 1.0]]).aopc().unwrap(), vec![0.5]);
    let nan = Heatmap { width: 2, height: 2, values: vec![f32::NAN; 4] };
    assert!(matches!(segment(&nan, Threshold::Mean), Err(AttribError::NonFinite { .. })));
    let short = Heatmap { width: 3, height: 2, values: vec![0.0; 4] };
    assert!(segment(&short, Threshold::Mean).is_err());
}

#[test]
fn zoo_config_with_a_zero_width_divisor_is_refused() {
    use rap_attrib::zoo::{Architecture, ZooConfig};
    for arch in [Architecture::Vgg16, Architecture::ResNet18] {
        match arch.describe(&ZooConfig::new(10, 0)) {
            Err(AttribError::InvalidParameter(m)) => assert!(m.contains("width_divisor = 0"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(Architecture::Vgg16.describe(&ZooConfig::new(0, 1)).is_err());
}

#[test]
fn a_description_without_layers_is_refused() {
    let dev = device();
    // Was a network that returned the image's pixels as logits.
    let e = SpecNetwork::from_json(r#"{"layers": []}"#, &std::collections::HashMap::new(), "", &dev).unwrap_err();
    assert!(is_typed(&e), "{e:?}");
}

#[test]
fn manifest_paths_stay_inside_the_dataset_and_labels_are_class_indices() {
    let (png, _) = small_images();
    let dir = tmp("manifest");
    for (truth, what) in [
        (json!({"image": "../../x.png", "instances": [{"bbox_xyxy": [1, 2, 30, 20]}]}), "an image outside"),
        (json!({"image": "/etc/passwd", "instances": [{"bbox_xyxy": [1, 2, 30, 20]}]}), "an absolute image path"),
        (
            json!({"image": "rgb.png", "instances": [{"mask": "../m.png", "bbox_xyxy": [1, 2, 30, 20]}]}),
            "a mask outside",
        ),
        (json!({"image": "rgb.png", "instances": [{"bbox_xyxy": [1, 2, 30, 20]}], "label": "cat"}), "a label `cat`"),
        (json!({"image": "rgb.png", "instances": [{"bbox_xyxy": [1, 2, 30, 20]}], "label": -3}), "a negative label"),
    ] {
        write_dataset(&dir, &png, true, &truth, None);
        match Dataset::load(&dir) {
            Err(e) => assert!(is_typed(&e), "{what}: {e:?}"),
            Ok(_) => panic!("{what} was accepted"),
        }
    }
    write_dataset(
        &dir,
        &png,
        true,
        &json!({"image": "rgb.png", "instances": [{"bbox_xyxy": [1, 2, 30, 20]}], "label": 3}),
        None,
    );
    let d = Dataset::load(&dir).unwrap();
    assert_eq!(d.samples[0].label, Some(3));
}

#[cfg(unix)]
#[test]
fn devices_pipes_and_directories_are_not_read_as_files() {
    let dir = tmp("not_a_file_dir");
    std::fs::create_dir_all(&dir).unwrap();
    for path in [Path::new("/dev/zero"), dir.as_path()] {
        let e = rap_attrib::imaging::load_rgb(path).unwrap_err();
        assert!(matches!(e, AttribError::Io { .. }), "{e:?}");
        assert!(read_safetensors(path).is_err());
        assert!(load_parameters(path).is_err());
        assert!(rap_attrib::metrics::Region::load_mask(path).is_err());
    }
}
