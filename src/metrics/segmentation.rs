//! Heatmaps as segmentation masks: thresholds, pixel accuracy and mean IoU.

use super::{Heatmap, Region, at_sample, heatmaps_with_regions, same_size};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// Where a heatmap is cut into object (above) and background (at or below).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Threshold {
    /// The paper's choice: 0 for a signed heatmap (one with negative values), its mean for a
    /// non-negative one.
    Auto,
    /// Zero.
    Zero,
    /// The heatmap's mean.
    Mean,
    /// The heatmap's median.
    Median,
    /// A percentile in `[0, 100]` of the heatmap's values (linear interpolation).
    Percentile(f32),
    /// A fixed value.
    Value(f32),
}

impl Threshold {
    /// The cut value for one heatmap.
    pub fn value_for(&self, values: &[f32]) -> Result<f32> {
        let n = values.len().max(1) as f64;
        let mean = || (values.iter().map(|&v| v as f64).sum::<f64>() / n) as f32;
        let percentile = |p: f32| {
            let mut s = values.to_vec();
            s.sort_by(f32::total_cmp);
            let pos = (p as f64 / 100.0) * s.len().saturating_sub(1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let frac = (pos - lo as f64) as f32;
            let (a, b) = (s.get(lo).copied().unwrap_or(0.0), s.get(hi).copied().unwrap_or(0.0));
            a + (b - a) * frac
        };
        match *self {
            Threshold::Auto => Ok(if values.iter().any(|&v| v < 0.0) { 0.0 } else { mean() }),
            Threshold::Zero => Ok(0.0),
            Threshold::Mean => Ok(mean()),
            Threshold::Median => Ok(percentile(50.0)),
            Threshold::Percentile(p) if (0.0..=100.0).contains(&p) => Ok(percentile(p)),
            Threshold::Percentile(p) => {
                Err(AttribError::InvalidParameter(format!("percentile threshold must lie in [0, 100], got {p}")))
            }
            Threshold::Value(v) if v.is_finite() => Ok(v),
            Threshold::Value(v) => Err(AttribError::InvalidParameter(format!("threshold must be finite, got {v}"))),
        }
    }
}

/// Pixel counts of a predicted object mask against the ground truth; they add up over images
/// (`+`), so that data-set scores pool pixels as segmentation benchmarks do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Object predicted, object true.
    pub true_positive: u64,
    /// Object predicted, background true.
    pub false_positive: u64,
    /// Background predicted, object true.
    pub false_negative: u64,
    /// Background predicted, background true.
    pub true_negative: u64,
}

impl std::ops::Add for Confusion {
    type Output = Confusion;
    fn add(self, o: Confusion) -> Confusion {
        Confusion {
            true_positive: self.true_positive + o.true_positive,
            false_positive: self.false_positive + o.false_positive,
            false_negative: self.false_negative + o.false_negative,
            true_negative: self.true_negative + o.true_negative,
        }
    }
}

impl Confusion {
    fn total(&self) -> u64 {
        self.true_positive + self.false_positive + self.false_negative + self.true_negative
    }

    /// `(TP + TN) / all pixels`.
    pub fn pixel_accuracy(&self) -> f32 {
        (self.true_positive + self.true_negative) as f32 / self.total().max(1) as f32
    }

    /// Object IoU `TP / (TP + FP + FN)`; 1 when neither mask has object pixels.
    pub fn iou_object(&self) -> f32 {
        let union = self.true_positive + self.false_positive + self.false_negative;
        if union == 0 { 1.0 } else { self.true_positive as f32 / union as f32 }
    }

    /// Background IoU `TN / (TN + FP + FN)`; 1 when neither mask has background pixels.
    pub fn iou_background(&self) -> f32 {
        let union = self.true_negative + self.false_positive + self.false_negative;
        if union == 0 { 1.0 } else { self.true_negative as f32 / union as f32 }
    }

    /// Mean IoU over the two classes, object and background (the paper's mIoU).
    pub fn mean_iou(&self) -> f32 {
        0.5 * (self.iou_object() + self.iou_background())
    }
}

/// A heatmap cut into an object mask: pixels strictly above the threshold are object.
pub fn segment(heatmap: &Heatmap, threshold: Threshold) -> Result<Region> {
    super::valid(heatmap, "segmentation")?;
    let cut = threshold.value_for(&heatmap.values)?;
    Region::from_mask(heatmap.width, heatmap.height, heatmap.values.iter().map(|&v| v > cut).collect())
}

/// Per-sample pixel counts of the thresholded heatmaps against ground-truth masks.
///
/// `pixel accuracy = (TP + TN) / N`; `IoU_c = |pred_c ∩ true_c| / |pred_c ∪ true_c|` for the
/// object and the background; `mIoU = (IoU_object + IoU_background) / 2`.
///
/// # Shapes
///
/// - `relevance`: `[B, C, H, W]` (summed over channels) or `[B, 1, H, W]`; `masks`: `B` of `W × H`
pub fn segmentation(relevance: &Tensor<4>, masks: &[Region], threshold: Threshold) -> Result<Vec<Confusion>> {
    let maps = heatmaps_with_regions(relevance, masks, "segmentation")?;
    maps.iter().zip(masks).enumerate().map(|(i, (m, t))| at_sample(i, confusion_of(m, t, threshold))).collect()
}

/// Pixel counts of one thresholded heatmap against its ground-truth mask (see [`segmentation`]).
pub fn confusion_of(map: &Heatmap, truth: &Region, threshold: Threshold) -> Result<Confusion> {
    same_size(map, truth, "segmentation")?;
    let pred = segment(map, threshold)?;
    let mut c = Confusion::default();
    for (&p, &t) in pred.as_slice().iter().zip(truth.as_slice()) {
        match (p, t) {
            (true, true) => c.true_positive += 1,
            (true, false) => c.false_positive += 1,
            (false, true) => c.false_negative += 1,
            (false, false) => c.true_negative += 1,
        }
    }
    Ok(c)
}
