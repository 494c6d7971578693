//! The outside–inside relevance ratio (Lapuschkin et al. 2016; the RAP paper's Eq. 11).

use super::{Heatmap, Region, at_sample, heatmaps_with_regions, same_size};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// Which relevance the ratio counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatioMode {
    /// Positive and negative relevance (the paper's "ALL", Eq. 11).
    All,
    /// Positive relevance only (the paper's "POS", Lapuschkin et al.'s original).
    Positive,
}

/// The outside–inside relevance ratio per sample.
///
/// With `P_in`, `P_out` the pixels inside and outside the region, `R⁺ = max(R, 0)` and
/// `R⁻ = max(−R, 0)` (the magnitude of the negative relevance) of the channel-summed heatmap:
///
/// ```text
///        mean_{P_out} R⁺ + mean_{P_in} R⁻
///   μ = ──────────────────────────────────      (ALL, Eq. 11)
///        mean_{P_in} R⁺ + mean_{P_out} R⁻
///
///   μ = mean_{P_out} R⁺ / mean_{P_in} R⁺        (POS)
/// ```
///
/// Lower is better: positive relevance inside and negative relevance outside the object. A
/// sample whose denominator is 0 (no positive relevance inside, and for ALL no negative
/// outside) gets `None`; a region that is empty or covers the whole picture is an error.
///
/// # Shapes
///
/// - `relevance`: `[B, C, H, W]` (summed over channels) or heatmaps `[B, 1, H, W]`
/// - `regions`: `B` regions of `W × H`
pub fn outside_inside_ratio(relevance: &Tensor<4>, regions: &[Region], mode: RatioMode) -> Result<Vec<Option<f32>>> {
    let maps = heatmaps_with_regions(relevance, regions, "outside-inside ratio")?;
    maps.iter().zip(regions).enumerate().map(|(i, (m, r))| at_sample(i, ratio_of(m, r, mode))).collect()
}

/// The outside–inside ratio of one heatmap (see [`outside_inside_ratio`]); the region must have
/// the heatmap's size.
pub fn ratio_of(map: &Heatmap, region: &Region, mode: RatioMode) -> Result<Option<f32>> {
    same_size(map, region, "outside-inside ratio")?;
    let n_in = region.count();
    let n_out = region.as_slice().len() - n_in;
    if n_in == 0 || n_out == 0 {
        return Err(AttribError::InvalidParameter(format!(
            "outside-inside ratio: the region has {n_in} pixels inside and {n_out} outside; both must be > 0"
        )));
    }
    let (mut pos_in, mut pos_out, mut neg_in, mut neg_out) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&v, &inside) in map.values.iter().zip(region.as_slice()) {
        let v = v as f64;
        match (inside, v >= 0.0) {
            (true, true) => pos_in += v,
            (true, false) => neg_in -= v,
            (false, true) => pos_out += v,
            (false, false) => neg_out -= v,
        }
    }
    let (n_in, n_out) = (n_in as f64, n_out as f64);
    let (num, den) = match mode {
        RatioMode::All => (pos_out / n_out + neg_in / n_in, pos_in / n_in + neg_out / n_out),
        RatioMode::Positive => (pos_out / n_out, pos_in / n_in),
    };
    Ok(if den > 0.0 { Some((num / den) as f32) } else { None })
}
