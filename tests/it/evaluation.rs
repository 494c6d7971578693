//! The evaluation harness: ground-truth loading (bundled VOC manifest, a user's directory) and
//! an end-to-end run whose numbers must equal the metrics called directly.

use crate::common;

use common::device;
use rap_attrib::burn::tensor::Device;
use rap_attrib::evaluation::{Dataset, EvaluationConfig, evaluate};
use rap_attrib::gradients::{GradientExplainer, GradientMethod};
use rap_attrib::imaging::load_imagenet;
use rap_attrib::metrics::{PerturbationConfig, RatioMode, Region, Threshold, outside_inside_ratio, segmentation};
use rap_attrib::zoo::{Architecture, ZooConfig, ZooModel};
use rap_attrib::{AttribError, AttributionMethod, Explainer, Target};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rap-attrib-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_bundled_voc_manifest_gives_the_union_of_all_instances() {
    let data = Dataset::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images/voc")).unwrap();
    assert_eq!(data.samples.len(), 1);
    let s = &data.samples[0];
    assert_eq!((s.width, s.height, s.boxes.len()), (500, 375, 19));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images/voc");
    // Instance 0 (the bottle) has 2625 pixels per labels.json; the union is checked pixel by pixel.
    assert_eq!(Region::load_mask(dir.join("mask_00.png")).unwrap().count(), 2625);
    let mut union = vec![false; 500 * 375];
    for i in 0..19 {
        let m = image::open(dir.join(format!("mask_{i:02}.png"))).unwrap().into_luma8();
        for (u, p) in union.iter_mut().zip(m.pixels()) {
            *u |= p.0[0] == 255;
        }
    }
    assert_eq!(s.mask.as_ref().unwrap().as_slice(), &union[..]);
    assert!(s.box_region().unwrap().count() >= union.iter().filter(|&&b| b).count());
}

fn write_photo(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]))
        .save(path)
        .unwrap();
}

#[test]
fn a_user_directory_with_masks_boxes_and_labels() {
    let dir = tmp("user");
    write_photo(&dir.join("a.png"), 40, 30);
    image::GrayImage::from_fn(40, 30, |x, y| image::Luma([if (10..20).contains(&x) && y < 15 { 255 } else { 0 }]))
        .save(dir.join("a.mask.png"))
        .unwrap();
    write_photo(&dir.join("b.jpg"), 32, 32);
    std::fs::write(dir.join("b.json"), r#"{"boxes": [[2, 3, 10, 12], [20, 20, 30, 31]], "label": 3}"#).unwrap();
    write_photo(&dir.join("c.png"), 16, 16);
    let data = Dataset::load(&dir).unwrap();
    assert_eq!(data.samples.len(), 2);
    assert_eq!(data.skipped.len(), 1);
    let a = &data.samples[0];
    assert_eq!((a.name.as_str(), a.boxes.len(), a.label), ("a", 1, None));
    assert_eq!(a.box_region().unwrap().count(), 150);
    let b = &data.samples[1];
    assert_eq!((b.label, b.box_region().unwrap().count()), (Some(3), 8 * 9 + 10 * 11));
    assert_eq!(b.mask_region().unwrap(), b.box_region().unwrap());
    // Broken ground truth is an error naming the file.
    std::fs::write(dir.join("b.json"), r#"{"boxes": [[2, 3, 10]]}"#).unwrap();
    let e = Dataset::load(&dir).unwrap_err();
    assert!(e.to_string().contains("b.json"), "{e}");
    std::fs::write(dir.join("b.json"), r#"{"boxes": [[2, 3, 40, 12]]}"#).unwrap();
    assert!(matches!(Dataset::load(&dir), Err(AttribError::InvalidParameter(_))));
    std::fs::remove_file(dir.join("b.json")).unwrap();
    image::GrayImage::new(8, 8).save(dir.join("a.mask.png")).unwrap();
    let e = Dataset::load(&dir).unwrap_err();
    assert!(e.to_string().contains("a.mask.png"), "{e}");
    let empty = tmp("empty");
    assert!(matches!(Dataset::load(&empty), Err(AttribError::InvalidParameter(_))));
}

#[test]
fn evaluate_matches_the_metrics_called_directly() {
    let dev: Device = device();
    let dir = tmp("e2e");
    write_photo(&dir.join("p.png"), 48, 40);
    std::fs::write(dir.join("p.json"), r#"{"boxes": [[8, 6, 30, 28]]}"#).unwrap();
    write_photo(&dir.join("q.png"), 40, 40);
    image::GrayImage::from_fn(40, 40, |x, y| image::Luma([if x + y < 30 { 200 } else { 0 }]))
        .save(dir.join("q.mask.png"))
        .unwrap();
    let data = Dataset::load(&dir).unwrap();
    let config = ZooConfig::new(10, 8);
    let model = ZooModel::random(Architecture::SqueezeNet1_1, config, 3, &dev).unwrap();
    let rap = Explainer::new(&model, model.composite("rap").unwrap());
    let grad = GradientExplainer::new(&model, GradientMethod::Gradient);
    let methods: Vec<(&str, &dyn AttributionMethod)> = vec![("RAP", &rap), ("Gradient", &grad)];
    let cfg = EvaluationConfig::default()
        .with_size(64)
        .with_threshold(Threshold::Auto)
        .with_pointing_tolerance(2.0)
        .with_perturbation(PerturbationConfig::default().with_pixels_per_step(50).with_steps(4).with_batch(3))
        .with_images_per_batch(1);
    let mut events = 0;
    let report = evaluate(&model, &methods, &data, &cfg, &dev, &mut |_| events += 1).unwrap();
    assert_eq!(events, 2 * (2 + 5));
    let bad_batch = cfg.with_images_per_batch(0);
    assert!(evaluate(&model, &methods, &data, &bad_batch, &dev, &mut |_| {}).is_err());
    assert_eq!(report.methods.len(), 2);
    for (mi, m) in report.methods.iter().enumerate() {
        assert_eq!((m.ratio_all.len(), m.segmentation.len(), m.pointing.len()), (2, 2, 2));
        assert_eq!((m.morf.samples(), m.lerf.scores[1].len()), (2, 5));
        // The same numbers from the metrics themselves.
        for (si, s) in data.samples.iter().enumerate() {
            let (_, x) = load_imagenet(&s.image, 64, &dev).unwrap();
            let r = methods[mi].1.attribute(x, Target::Classes(vec![report.targets[si]])).unwrap().relevance;
            let boxes = [s.box_region().unwrap().resize(64, 64).unwrap()];
            let mask = [s.mask_region().unwrap().resize(64, 64).unwrap()];
            assert_eq!(m.ratio_all[si], outside_inside_ratio(&r, &boxes, RatioMode::All).unwrap()[0]);
            assert_eq!(m.ratio_pos[si], outside_inside_ratio(&r, &boxes, RatioMode::Positive).unwrap()[0]);
            assert_eq!(m.segmentation[si], segmentation(&r, &mask, Threshold::Auto).unwrap()[0]);
        }
        // The kept first-sample relevance is the method's relevance of sample 0.
        let (_, x0) = load_imagenet(&data.samples[0].image, 64, &dev).unwrap();
        let r0 = methods[mi].1.attribute(x0, Target::Classes(vec![report.targets[0]])).unwrap().relevance;
        assert_eq!(rap_attrib::kit::to_vec(m.first_relevance.as_ref().unwrap()), rap_attrib::kit::to_vec(&r0));
        // Step 0 of every curve is the unperturbed score, the same for both orders.
        assert_eq!(m.morf.scores[0][0], m.lerf.scores[0][0]);
    }
    // Explaining both photos in one batch gives the same report.
    let batched = evaluate(&model, &methods, &data, &cfg.with_images_per_batch(2), &dev, &mut |_| {}).unwrap();
    assert_eq!(batched.targets, report.targets);
    for (a, b) in report.methods.iter().zip(&batched.methods) {
        assert_eq!(a.segmentation, b.segmentation);
        assert_eq!(a.pointing, b.pointing);
        for (x, y) in a.ratio_all.iter().chain(&a.ratio_pos).zip(b.ratio_all.iter().chain(&b.ratio_pos)) {
            assert!(x.zip(*y).is_none_or(|(x, y)| (x - y).abs() <= 1e-4 * x.abs().max(1e-3)), "{x:?} {y:?}");
        }
        for (x, y) in a.morf.scores.iter().chain(&a.lerf.scores).zip(b.morf.scores.iter().chain(&b.lerf.scores)) {
            assert!(x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-3 * p.abs().max(1.0)), "{x:?} {y:?}");
        }
    }
    let table = report.to_string();
    assert!(table.contains("ALL") && table.contains("mIoU") && table.contains("RAP") && table.contains("Gradient"));
    let bad = cfg.with_threshold(Threshold::Percentile(150.0));
    assert!(matches!(
        evaluate(&model, &methods, &data, &bad, &dev, &mut |_| {}),
        Err(AttribError::InvalidParameter(_))
    ));
}

#[test]
fn the_report_says_where_means_leave_samples_out() {
    use rap_attrib::evaluation::{MethodResult, Report};
    use rap_attrib::metrics::{Confusion, Order, PerturbationCurve};
    let curve = |order| PerturbationCurve {
        order,
        pixels_per_step: 100,
        scores: vec![vec![2.0, 1.0]],
        correct: vec![vec![true, false]],
    };
    let m = MethodResult {
        name: "M".into(),
        ratio_all: vec![Some(0.5), None],
        ratio_pos: vec![Some(0.25), Some(0.75)],
        segmentation: vec![Confusion { true_positive: 1, false_positive: 0, false_negative: 1, true_negative: 2 }; 2],
        pointing: vec![Some(true), None],
        morf: curve(Order::MostRelevantFirst),
        lerf: curve(Order::LeastRelevantFirst),
        seconds: 1.0,
        first_relevance: None,
    };
    assert_eq!((m.mean_ratio_all(), m.mean_ratio_pos(), m.pointing_accuracy()), (Some(0.5), Some(0.5), Some(1.0)));
    assert_eq!(m.pooled().true_negative, 4);
    let report = Report {
        samples: vec!["a".into(), "b".into()],
        targets: vec![0, 1],
        methods: vec![m],
        config: EvaluationConfig::default(),
    };
    let text = report.to_string();
    assert!(text.contains("note: M: ratio undefined") && text.contains("for 1 (ALL) / 0 (POS)"), "{text}");
    assert!(text.contains("75.00"), "pixel accuracy of the pooled counts: {text}");
}
