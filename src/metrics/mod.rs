//! Evaluation metrics of explanations: the RAP paper's outside–inside relevance ratio (Eq. 11),
//! segmentation pixel accuracy and mean IoU, region perturbation (MoRF/LeRF curves and AOPC),
//! and the pointing game.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use rap_attrib::metrics::{BoundingBox, RatioMode, Region, outside_inside_ratio};
//!
//! let device = Device::flex();
//! // A 4x4 heatmap whose positive relevance lies inside the top-left 2x2 box.
//! let heatmap = Tensor::<4>::from_data(
//!     [[[[1.0, 2.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]]]],
//!     &device,
//! );
//! let boxes = vec![Region::from_boxes(4, 4, &[BoundingBox::new(0, 0, 2, 2)])?];
//! let ratio = outside_inside_ratio(&heatmap, &boxes, RatioMode::All)?;
//! assert_eq!(ratio, vec![Some(0.0)]); // nothing positive outside, nothing negative inside
//! # Ok::<(), rap_attrib::AttribError>(())
//! ```
//!
//! Every metric takes a batch of relevance maps, `[B, C, H, W]` (summed over channels into
//! heatmaps) or heatmaps `[B, 1, H, W]`, with one ground-truth [`Region`] per sample, and
//! returns one value per sample (the `*_of` functions score one host-side [`Heatmap`]); the pixel counts of segmentation ([`Confusion`]) and the
//! perturbation curves ([`PerturbationCurve`]) add up over a data set.

mod perturbation;
mod pointing;
mod ratio;
mod region;
mod segmentation;

pub use perturbation::{
    MAX_PERTURBATION_BATCH, Order, PerturbationConfig, PerturbationCurve, Score, perturbation_curves,
};
pub use pointing::{pointing_game, pointing_of};
pub use ratio::{RatioMode, outside_inside_ratio, ratio_of};
pub use region::{BoundingBox, Region};
pub use segmentation::{Confusion, Threshold, confusion_of, segment, segmentation};

use crate::error::{AttribError, Result};
use crate::tensor::to_vec;
use burn::tensor::Tensor;

/// A heatmap on the host: one value per pixel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width × height` values, row-major.
    pub values: Vec<f32>,
}

impl Heatmap {
    /// Per-sample heatmaps of a relevance batch `[B, C, H, W]`: the sum over channels (signed),
    /// read back in one transfer. Non-finite values (or sums) are an error.
    pub fn from_relevance(relevance: &Tensor<4>) -> Result<Vec<Heatmap>> {
        let [b, c, h, w] = relevance.dims();
        if b == 0 || c == 0 || h == 0 || w == 0 {
            return Err(AttribError::EmptyBatch);
        }
        // The channel axis is short: summed on the device, C times less to read back.
        let host = to_vec(&relevance.clone().sum_dim(1));
        if host.iter().any(|v| !v.is_finite()) {
            return Err(AttribError::NonFinite { what: "the relevance maps".into() });
        }
        Ok(host.chunks(h * w).map(|v| Heatmap { width: w, height: h, values: v.to_vec() }).collect())
    }
}

/// Heatmaps of `relevance` checked against one region per sample of the same size.
fn heatmaps_with_regions(relevance: &Tensor<4>, regions: &[Region], metric: &str) -> Result<Vec<Heatmap>> {
    let maps = Heatmap::from_relevance(relevance)?;
    if regions.len() != maps.len() {
        return Err(AttribError::InvalidParameter(format!(
            "{metric}: {} region(s) for a batch of {}; give one per sample",
            regions.len(),
            maps.len()
        )));
    }
    Ok(maps)
}

/// Checks that a region has its heatmap's size.
fn same_size(map: &Heatmap, region: &Region, metric: &str) -> Result<()> {
    valid(map, metric)?;
    if (map.width, map.height) == (region.width(), region.height()) {
        Ok(())
    } else {
        Err(AttribError::InvalidParameter(format!(
            "{metric}: the region is {}x{} but the heatmap is {}x{}; resize the region first",
            region.width(),
            region.height(),
            map.width,
            map.height
        )))
    }
}

/// A heatmap of `width·height ≥ 1` finite values, else the error naming `metric`.
fn valid(map: &Heatmap, metric: &str) -> Result<()> {
    if map.width.checked_mul(map.height) != Some(map.values.len()) || map.values.is_empty() {
        return Err(AttribError::InvalidParameter(format!(
            "{metric}: a {}x{} heatmap with {} values; expected width·height ≥ 1 values",
            map.width,
            map.height,
            map.values.len()
        )));
    }
    if map.values.iter().any(|v| !v.is_finite()) {
        return Err(AttribError::NonFinite { what: format!("the heatmap given to the {metric}") });
    }
    Ok(())
}

/// Names the sample in a per-sample error.
fn at_sample<T>(i: usize, r: Result<T>) -> Result<T> {
    r.map_err(|e| match e {
        AttribError::InvalidParameter(m) => AttribError::InvalidParameter(format!("sample {i}: {m}")),
        other => other,
    })
}
