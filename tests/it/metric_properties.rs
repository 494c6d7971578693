//! Property tests of the metrics on random heatmaps and regions: identities that must hold for
//! any input (sign flip inverts the ALL ratio, swapping inside and outside inverts the POS ratio,
//! positive scaling changes nothing, pixel counts add up, a map equal to its mask segments
//! perfectly, both perturbation orders meet at the start and, once every pixel is gone, at the
//! end). `PROPTEST_CASES` cases (default 256), deterministic runner.

use crate::common;

use common::{device, tensor4};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rap_attrib::burn::tensor::Tensor;
use rap_attrib::metrics::{
    BoundingBox, Order, PerturbationConfig, RatioMode, Region, Threshold, outside_inside_ratio, perturbation_curves,
    pointing_game, segmentation,
};
use rap_attrib::spec::{HostTensor, SpecNetwork};
use serde_json::json;
use std::collections::HashMap;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// A heatmap of `w × h` values and a box strictly inside it (some pixels in, some out).
fn case() -> impl Strategy<Value = (usize, usize, Vec<f32>, BoundingBox)> {
    (2usize..12, 2usize..12).prop_flat_map(|(w, h)| {
        let values = proptest::collection::vec(prop_oneof![Just(0.0f32), -5.0f32..5.0], w * h);
        let bx = (0..w, 0..h).prop_flat_map(move |(x1, y1)| (Just(x1), Just(y1), x1 + 1..=w, y1 + 1..=h));
        (Just(w), Just(h), values, bx)
            .prop_filter("box must leave pixels outside", |(w, h, _, b)| (b.2 - b.0) * (b.3 - b.1) < w * h)
            .prop_map(|(w, h, v, (x1, y1, x2, y2))| (w, h, v, BoundingBox::new(x1, y1, x2, y2)))
    })
}

fn map(v: &[f32], w: usize, h: usize) -> Tensor<4> {
    tensor4(v.to_vec(), [1, 1, h, w], &device())
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn ratio_identities() {
    runner()
        .run(&case(), |(w, h, v, b)| {
            let r = [Region::from_boxes(w, h, &[b]).unwrap()];
            let inv: Vec<bool> = r[0].as_slice().iter().map(|x| !x).collect();
            let outside = [Region::from_mask(w, h, inv).unwrap()];
            let neg: Vec<f32> = v.iter().map(|x| -x).collect();
            let scaled: Vec<f32> = v.iter().map(|x| 3.5 * x).collect();
            let all = outside_inside_ratio(&map(&v, w, h), &r, RatioMode::All).unwrap()[0];
            let all_neg = outside_inside_ratio(&map(&neg, w, h), &r, RatioMode::All).unwrap()[0];
            let all_scaled = outside_inside_ratio(&map(&scaled, w, h), &r, RatioMode::All).unwrap()[0];
            let pos = outside_inside_ratio(&map(&v, w, h), &r, RatioMode::Positive).unwrap()[0];
            let pos_swapped = outside_inside_ratio(&map(&v, w, h), &outside, RatioMode::Positive).unwrap()[0];
            // Flipping the sign swaps numerator and denominator of ALL.
            if let (Some(a), Some(b)) = (all, all_neg)
                && a > 0.0
            {
                prop_assert!(close(a * b, 1.0), "ALL {a} and ALL(−R) {b}");
            }
            // Swapping inside and outside inverts POS.
            if let (Some(a), Some(b)) = (pos, pos_swapped)
                && a > 0.0
            {
                prop_assert!(close(a * b, 1.0), "POS {a} and swapped {b}");
            }
            match (all, all_scaled) {
                (Some(a), Some(b)) => prop_assert!(close(a, b)),
                (a, b) => prop_assert_eq!(a.is_none(), b.is_none()),
            }
            // POS ignores negative relevance; ALL ≥ 0.
            let clipped: Vec<f32> = v.iter().map(|x| x.max(0.0)).collect();
            prop_assert_eq!(pos, outside_inside_ratio(&map(&clipped, w, h), &r, RatioMode::Positive).unwrap()[0]);
            prop_assert!(all.is_none_or(|a| a >= 0.0));
            Ok(())
        })
        .unwrap();
}

#[test]
fn segmentation_and_pointing_identities() {
    runner()
        .run(&case(), |(w, h, v, b)| {
            let r = [Region::from_boxes(w, h, &[b]).unwrap()];
            for t in [Threshold::Auto, Threshold::Zero, Threshold::Mean, Threshold::Median, Threshold::Percentile(80.0)]
            {
                let c = segmentation(&map(&v, w, h), &r, t).unwrap()[0];
                let n = (c.true_positive + c.false_positive + c.false_negative + c.true_negative) as usize;
                prop_assert_eq!(n, w * h);
                prop_assert_eq!((c.true_positive + c.false_negative) as usize, r[0].count());
                for s in [c.pixel_accuracy(), c.mean_iou(), c.iou_object(), c.iou_background()] {
                    prop_assert!((0.0..=1.0).contains(&s));
                }
            }
            // The indicator of the region (any positive height) segments it perfectly and points into it.
            let k = 0.5 + v[0].abs();
            let ind: Vec<f32> = r[0].as_slice().iter().map(|&x| if x { k } else { 0.0 }).collect();
            let c = segmentation(&map(&ind, w, h), &r, Threshold::Auto).unwrap()[0];
            prop_assert_eq!(c.mean_iou(), 1.0);
            prop_assert_eq!(pointing_game(&map(&ind, w, h), &r, 0.0).unwrap()[0], Some(true));
            // A tolerance as large as the picture always hits.
            let p = pointing_game(&map(&v, w, h), &r, (w + h) as f32).unwrap()[0];
            prop_assert!(p.is_none_or(|hit| hit));
            Ok(())
        })
        .unwrap();
}

/// A 1×1 convolution of `c` channels into a sum over pixels: logit₀ = Σ w·x, logit₁ = −logit₀.
fn pixel_sum_model(c: usize, hw: usize) -> SpecNetwork {
    let spec = json!({"layers": [{"name": "fc", "type": "Linear", "in_features": c * hw, "out_features": 2, "bias": false}],
                      "input_shape": [0, c, 1, hw]});
    let w: Vec<f64> = (0..c * hw).map(|i| ((i * 7) % 5) as f64 - 1.5).collect();
    let mut p = HashMap::new();
    let weight: Vec<f64> = w.iter().copied().chain(w.iter().map(|x| -x)).collect();
    p.insert(
        "fc.weight".to_string(),
        HostTensor { shape: vec![2, c * hw], values: weight.iter().map(|&v| v as f32).collect() },
    );
    SpecNetwork::from_value(&spec, &p, "", &device()).unwrap()
}

#[test]
fn perturbation_orders_meet_at_both_ends() {
    let strategy = (1usize..4, 2usize..10, 1usize..4).prop_flat_map(|(c, hw, ppp)| {
        (
            Just(c),
            Just(hw),
            Just(ppp),
            proptest::collection::vec(-2.0f32..2.0, c * hw),
            proptest::collection::vec(-1.0f32..1.0, hw),
        )
    });
    runner()
        .run(&strategy, |(c, hw, ppp, x, rel)| {
            let model = pixel_sum_model(c, hw);
            let steps = hw.div_ceil(ppp) + 1;
            let cfg = PerturbationConfig::default().with_pixels_per_step(ppp).with_steps(steps).with_batch(3);
            let curves = perturbation_curves(
                &model,
                &tensor4(x, [1, c, 1, hw], &device()),
                &tensor4(rel, [1, 1, 1, hw], &device()),
                &[0],
                &[Order::MostRelevantFirst, Order::LeastRelevantFirst],
                &cfg,
                &mut |_, _| {},
            )
            .unwrap();
            let (m, l) = (&curves[0].scores[0], &curves[1].scores[0]);
            prop_assert_eq!(m.len(), steps + 1);
            prop_assert_eq!(m[0], l[0]);
            // Everything removed (value 0): the logit of a bias-free linear model is 0.
            prop_assert!(m[steps].abs() < 1e-5 && l[steps].abs() < 1e-5, "{m:?} {l:?}");
            Ok(())
        })
        .unwrap();
}
