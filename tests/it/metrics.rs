//! Metrics on constructed cases whose answers are known by hand. Runs on the device of
//! `RAP_TEST_DEVICE`.

use crate::common;

use common::{device, tensor4};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::metrics::{
    BoundingBox, Confusion, Order, PerturbationConfig, RatioMode, Region, Score, Threshold, outside_inside_ratio,
    perturbation_curves, pointing_game, segmentation,
};
use rap_attrib::spec::{HostTensor, SpecNetwork};
use rap_attrib::{AttribError, AttributionMethod, Composite, Explainer, Target};
use serde_json::json;
use std::collections::HashMap;

fn map(values: Vec<f32>, h: usize, w: usize) -> Tensor<4> {
    tensor4(values, [1, 1, h, w], &device())
}

fn top_left_box() -> Region {
    Region::from_boxes(4, 4, &[BoundingBox::new(0, 0, 2, 2)]).unwrap()
}

#[test]
fn ratio_is_zero_when_all_relevance_is_where_it_belongs() {
    // Positive inside the box, negative outside.
    let mut v = vec![0.0; 16];
    v[0] = 1.0;
    v[5] = 2.0;
    v[15] = -3.0;
    let r = top_left_box();
    assert_eq!(
        outside_inside_ratio(&map(v.clone(), 4, 4), std::slice::from_ref(&r), RatioMode::All).unwrap(),
        vec![Some(0.0)]
    );
    assert_eq!(outside_inside_ratio(&map(v, 4, 4), &[r], RatioMode::Positive).unwrap(), vec![Some(0.0)]);
}

#[test]
fn ratio_by_hand() {
    // Box: 4 pixels in, 12 out. In: +4, +4, −2 (and 0). Out: +3, −6 (rest 0).
    let mut v = vec![0.0; 16];
    v[0] = 4.0;
    v[1] = 4.0;
    v[4] = -2.0;
    v[10] = 3.0;
    v[15] = -6.0;
    let r = [top_left_box()];
    // ALL: (3/12 + 2/4) / (8/4 + 6/12) = 0.75 / 2.5 = 0.3.   POS: (3/12) / (8/4) = 0.125.
    let all = outside_inside_ratio(&map(v.clone(), 4, 4), &r, RatioMode::All).unwrap()[0].unwrap();
    let pos = outside_inside_ratio(&map(v, 4, 4), &r, RatioMode::Positive).unwrap()[0].unwrap();
    assert!((all - 0.3).abs() < 1e-6 && (pos - 0.125).abs() < 1e-6, "{all} {pos}");
    // A uniform positive heatmap: POS = ALL = 1.
    let u = outside_inside_ratio(&map(vec![0.5; 16], 4, 4), &r, RatioMode::Positive).unwrap()[0].unwrap();
    assert!((u - 1.0).abs() < 1e-6);
    // Channels are summed first: [+1, −1] per pixel is a zero heatmap, whose ratio is undefined.
    let two = tensor4([vec![1.0; 16], vec![-1.0; 16]].concat(), [1, 2, 4, 4], &device());
    assert_eq!(outside_inside_ratio(&two, &r, RatioMode::All).unwrap(), vec![None]);
}

#[test]
fn ratio_rejects_degenerate_regions_and_mismatches() {
    let full = Region::from_boxes(4, 4, &[BoundingBox::new(0, 0, 4, 4)]).unwrap();
    let e = outside_inside_ratio(&map(vec![1.0; 16], 4, 4), &[full], RatioMode::All).unwrap_err();
    assert!(matches!(e, AttribError::InvalidParameter(_)), "{e}");
    let small = Region::from_boxes(2, 2, &[BoundingBox::new(0, 0, 1, 1)]).unwrap();
    assert!(outside_inside_ratio(&map(vec![1.0; 16], 4, 4), &[small], RatioMode::All).is_err());
    assert!(outside_inside_ratio(&map(vec![1.0; 16], 4, 4), &[], RatioMode::All).is_err());
    let nan = map([vec![f32::NAN], vec![0.0; 15]].concat(), 4, 4);
    assert!(matches!(
        outside_inside_ratio(&nan, &[top_left_box()], RatioMode::All),
        Err(AttribError::NonFinite { .. })
    ));
}

#[test]
fn a_heatmap_equal_to_the_mask_segments_perfectly() {
    let mask = top_left_box();
    let v: Vec<f32> = mask.as_slice().iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    let c = segmentation(&map(v.clone(), 4, 4), std::slice::from_ref(&mask), Threshold::Auto).unwrap()[0];
    assert_eq!(c, Confusion { true_positive: 4, false_positive: 0, false_negative: 0, true_negative: 12 });
    assert_eq!((c.pixel_accuracy(), c.iou_object(), c.iou_background(), c.mean_iou()), (1.0, 1.0, 1.0, 1.0));
    // The inverted heatmap gets everything wrong.
    let inv: Vec<f32> = v.iter().map(|x| 1.0 - x).collect();
    let c = segmentation(&map(inv, 4, 4), std::slice::from_ref(&mask), Threshold::Auto).unwrap()[0];
    assert_eq!((c.pixel_accuracy(), c.mean_iou()), (0.0, 0.0));
    // A signed heatmap is cut at zero by Auto: +1 in the box, −1 elsewhere.
    let signed: Vec<f32> = v.iter().map(|x| 2.0 * x - 1.0).collect();
    let c = segmentation(&map(signed, 4, 4), &[mask], Threshold::Auto).unwrap()[0];
    assert_eq!(c.mean_iou(), 1.0);
}

#[test]
fn segmentation_by_hand_and_thresholds() {
    // Row-major 4x4 ramp 0..15, mask = top-left box (pixels 0, 1, 4, 5).
    let ramp: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let mask = top_left_box();
    // Mean 7.5: predicted object = pixels 8..15: TP 0, FP 8, FN 4, TN 4.
    let c = segmentation(&map(ramp.clone(), 4, 4), std::slice::from_ref(&mask), Threshold::Auto).unwrap()[0];
    assert_eq!(c, Confusion { true_positive: 0, false_positive: 8, false_negative: 4, true_negative: 4 });
    assert_eq!(c.pixel_accuracy(), 0.25);
    assert!((c.mean_iou() - 0.5 * (0.0 + 4.0 / 16.0)).abs() < 1e-7);
    // Value 4.5 → pixels 5..15 (11): TP 1 (pixel 5), FP 10, FN 3, TN 2.
    let c = segmentation(&map(ramp.clone(), 4, 4), std::slice::from_ref(&mask), Threshold::Value(4.5)).unwrap()[0];
    assert_eq!(c, Confusion { true_positive: 1, false_positive: 10, false_negative: 3, true_negative: 2 });
    // The 75th percentile of 0..15 is 11.25 → 4 pixels above; the median 7.5 equals the mean.
    let p =
        segmentation(&map(ramp.clone(), 4, 4), std::slice::from_ref(&mask), Threshold::Percentile(75.0)).unwrap()[0];
    assert_eq!(p.true_positive + p.false_positive, 4);
    let m = segmentation(&map(ramp.clone(), 4, 4), std::slice::from_ref(&mask), Threshold::Median).unwrap()[0];
    assert_eq!(m.true_positive + m.false_positive, 8);
    assert!(segmentation(&map(ramp, 4, 4), &[mask], Threshold::Percentile(101.0)).is_err());
    // Counts pool over images.
    let sum = c + c;
    assert_eq!(sum.true_negative, 4);
    assert_eq!(sum.pixel_accuracy(), c.pixel_accuracy());
}

#[test]
fn pointing_game_hits_misses_and_tolerance() {
    let mask = top_left_box();
    let mut v = vec![0.0; 16];
    v[5] = 1.0; // (1, 1): inside
    assert_eq!(pointing_game(&map(v.clone(), 4, 4), std::slice::from_ref(&mask), 0.0).unwrap(), vec![Some(true)]);
    let mut v = vec![0.0; 16];
    v[15] = 1.0; // (3, 3): distance √8 ≈ 2.83 from (1, 1)
    assert_eq!(pointing_game(&map(v.clone(), 4, 4), std::slice::from_ref(&mask), 2.0).unwrap(), vec![Some(false)]);
    assert_eq!(pointing_game(&map(v, 4, 4), std::slice::from_ref(&mask), 3.0).unwrap(), vec![Some(true)]);
    assert_eq!(pointing_game(&map(vec![0.3; 16], 4, 4), std::slice::from_ref(&mask), 0.0).unwrap(), vec![None]);
    assert!(pointing_game(&map(vec![0.3; 16], 4, 4), &[mask], f32::NAN).is_err());
}

/// logit₀ = Σ wᵢ xᵢ with w = 1..6 over a 1×2×3 image; logit₁ = 10 (bias only).
fn linear_image_model() -> SpecNetwork {
    let spec = json!({"layers": [{"name": "fc", "type": "Linear", "in_features": 6, "out_features": 2, "bias": true}],
                      "input_shape": [0, 1, 2, 3]});
    let mut p = HashMap::new();
    let w: Vec<f64> = (1..=6).map(|v| v as f64).chain(std::iter::repeat_n(0.0, 6)).collect();
    p.insert("fc.weight".to_string(), HostTensor { shape: vec![2, 6], values: w.iter().map(|&v| v as f32).collect() });
    p.insert("fc.bias".to_string(), HostTensor { shape: vec![2], values: vec![0.0, 10.0] });
    SpecNetwork::from_value(&spec, &p, "", &device()).unwrap()
}

#[test]
fn perturbation_curves_by_hand() {
    let model = linear_image_model();
    // x = 1 everywhere: logit₀ = 21, contributions 1..6; relevance = contributions.
    let x = tensor4(vec![1.0; 6], [1, 1, 2, 3], &device());
    let rel = tensor4((1..=6).map(|v| v as f32).collect(), [1, 1, 2, 3], &device());
    let cfg = PerturbationConfig::default()
        .with_pixels_per_step(2)
        .with_steps(4)
        .with_value(0.0)
        .with_score(Score::Logit)
        .with_batch(64);
    let mut steps_seen = 0;
    let curves = perturbation_curves(
        &model,
        &x,
        &rel,
        &[0],
        &[Order::MostRelevantFirst, Order::LeastRelevantFirst],
        &cfg,
        &mut |_, _| steps_seen += 1,
    )
    .unwrap();
    assert_eq!(steps_seen, 5);
    // MoRF removes 6+5, then 4+3, then 2+1; step 4 has nothing left to remove.
    assert_eq!(curves[0].scores, vec![vec![21.0, 10.0, 3.0, 0.0, 0.0]]);
    // LeRF removes 1+2, 3+4, 5+6.
    assert_eq!(curves[1].scores, vec![vec![21.0, 18.0, 11.0, 0.0, 0.0]]);
    // Class 1 (logit 10) wins once logit₀ < 10... and ties go to the first class.
    assert_eq!(curves[0].correct, vec![vec![true, true, false, false, false]]);
    assert_eq!(curves[1].accuracy(), vec![1.0, 1.0, 1.0, 0.0, 0.0]);
    // AOPC = mean over k of (21 − s_k): MoRF (0 + 11 + 18 + 21 + 21) / 5 = 14.2.
    assert!((curves[0].aopc().unwrap()[0] - 14.2).abs() < 1e-5);
    assert!((curves[1].mean_aopc().unwrap() - (0.0 + 3.0 + 10.0 + 21.0 + 21.0) / 5.0).abs() < 1e-5);
    // Removed pixels take `value`: with value 1 nothing changes.
    let same = cfg.with_value(1.0);
    let c = perturbation_curves(&model, &x, &rel, &[0], &[Order::MostRelevantFirst], &same, &mut |_, _| {}).unwrap();
    assert_eq!(c[0].scores, vec![vec![21.0; 5]]);
    // Probabilities: softmax of (21, 10) at step 0.
    let prob = cfg.with_score(Score::Probability);
    let c = perturbation_curves(&model, &x, &rel, &[0], &[Order::MostRelevantFirst], &prob, &mut |_, _| {}).unwrap();
    let p0 = 1.0 / (1.0 + (-11.0f64).exp());
    assert!((c[0].scores[0][0] as f64 - p0).abs() < 1e-6);
}

#[test]
fn perturbation_batches_equal_single_samples() {
    let model = linear_image_model();
    let xs: Vec<f32> = vec![1.0, -2.0, 0.5, 3.0, 1.0, -1.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2];
    let rels: Vec<f32> = vec![0.1, 0.5, -0.3, 0.9, 0.0, 0.2, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1];
    let orders = [Order::MostRelevantFirst, Order::LeastRelevantFirst];
    let cfg = PerturbationConfig::default().with_pixels_per_step(1).with_steps(6).with_batch(3);
    let both = perturbation_curves(
        &model,
        &tensor4(xs.clone(), [2, 1, 2, 3], &device()),
        &tensor4(rels.clone(), [2, 1, 2, 3], &device()),
        &[0, 1],
        &orders,
        &cfg,
        &mut |_, _| {},
    )
    .unwrap();
    for s in 0..2 {
        let one = perturbation_curves(
            &model,
            &tensor4(xs[s * 6..(s + 1) * 6].to_vec(), [1, 1, 2, 3], &device()),
            &tensor4(rels[s * 6..(s + 1) * 6].to_vec(), [1, 1, 2, 3], &device()),
            &[s],
            &orders,
            &cfg.with_batch(1),
            &mut |_, _| {},
        )
        .unwrap();
        for o in 0..2 {
            assert_eq!(one[o].scores[0], both[o].scores[s]);
            assert_eq!(one[o].correct[0], both[o].correct[s]);
        }
    }
}

#[test]
fn perturbation_rejects_bad_settings() {
    let model = linear_image_model();
    let x = tensor4(vec![1.0; 6], [1, 1, 2, 3], &device());
    let run = |rel: Tensor<4>, targets: &[usize], cfg: PerturbationConfig| {
        perturbation_curves(&model, &x, &rel, targets, &[Order::MostRelevantFirst], &cfg, &mut |_, _| {})
    };
    let rel = || tensor4(vec![1.0; 6], [1, 1, 2, 3], &device());
    assert!(matches!(run(rel(), &[0, 1], Default::default()), Err(AttribError::TargetCount { .. })));
    let short = PerturbationConfig::default().with_steps(3);
    assert!(matches!(run(rel(), &[7], short), Err(AttribError::TargetOutOfRange { .. })));
    // 40 steps on a map of 6 pixels, an enormous batch: refused before any work.
    assert!(
        matches!(run(rel(), &[0], Default::default()), Err(AttribError::InvalidParameter(m)) if m.contains("steps"))
    );
    let huge = PerturbationConfig::default().with_steps(3).with_batch(usize::MAX);
    assert!(matches!(run(rel(), &[0], huge), Err(AttribError::InvalidParameter(m)) if m.contains("batch")));
    let zero = PerturbationConfig::default().with_pixels_per_step(0);
    assert!(matches!(run(rel(), &[0], zero), Err(AttribError::InvalidParameter(_))));
    let wrong = tensor4(vec![1.0; 4], [1, 1, 2, 2], &device());
    assert!(matches!(run(wrong, &[0], Default::default()), Err(AttribError::InvalidParameter(_))));
}

#[test]
fn rule_and_gradient_methods_share_one_interface() {
    use rap_attrib::gradients::{GradientExplainer, GradientMethod};
    let model = linear_image_model();
    let x = tensor4(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 1, 2, 3], &device());
    let rap = Explainer::new(&model, Composite::epsilon(1e-9).unwrap());
    let grad = GradientExplainer::new(&model, GradientMethod::InputTimesGradient);
    let methods: Vec<&dyn AttributionMethod> = vec![&rap, &grad];
    let maps: Vec<Vec<f32>> = methods
        .iter()
        .map(|m| rap_attrib::kit::to_vec(&m.attribute(x.clone(), Target::Classes(vec![0])).unwrap().relevance))
        .collect();
    // On a bias-free linear score, LRP-ε (tiny ε) and input × gradient agree: xᵢ wᵢ.
    let want: Vec<f32> = (1..=6).map(|i| (i * i) as f32).collect();
    for m in maps {
        assert!(m.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3 * b), "{m:?}");
    }
}
