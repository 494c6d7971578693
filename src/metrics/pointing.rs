//! The pointing game (Zhang et al. 2016).

use super::{Heatmap, Region, at_sample, heatmaps_with_regions, same_size};
use crate::error::{AttribError, Result};
use burn::tensor::Tensor;

/// Whether each heatmap's maximum falls on the object: a hit when a region pixel lies within
/// `tolerance` pixels (Euclidean) of the first maximum in row-major order (Zhang et al. use 15
/// pixels at 224²; 0 asks for the maximum itself to be inside). A constant heatmap has no
/// maximum to point with and gets `None`.
///
/// # Shapes
///
/// - `relevance`: `[B, C, H, W]` (summed over channels) or `[B, 1, H, W]`; `regions`: `B` of `W × H`
pub fn pointing_game(relevance: &Tensor<4>, regions: &[Region], tolerance: f32) -> Result<Vec<Option<bool>>> {
    check_tolerance(tolerance)?;
    let maps = heatmaps_with_regions(relevance, regions, "pointing game")?;
    maps.iter().zip(regions).enumerate().map(|(i, (m, r))| at_sample(i, pointing_of(m, r, tolerance))).collect()
}

fn check_tolerance(tolerance: f32) -> Result<()> {
    if tolerance.is_finite() && tolerance >= 0.0 {
        Ok(())
    } else {
        Err(AttribError::InvalidParameter(format!(
            "pointing game: tolerance must be a finite number of pixels ≥ 0, got {tolerance}"
        )))
    }
}

/// The pointing game on one heatmap (see [`pointing_game`]).
pub fn pointing_of(map: &Heatmap, region: &Region, tolerance: f32) -> Result<Option<bool>> {
    check_tolerance(tolerance)?;
    same_size(map, region, "pointing game")?;
    let (mut best, mut at) = (f32::NEG_INFINITY, 0);
    let mut lowest = f32::INFINITY;
    for (i, &v) in map.values.iter().enumerate() {
        if v > best {
            best = v;
            at = i;
        }
        lowest = lowest.min(v);
    }
    if best == lowest {
        return Ok(None);
    }
    let width = map.width.max(1);
    let (px, py) = (at % width, at / width);
    // The window is clipped to the map, so the search never visits more pixels than it has.
    let t = tolerance.floor().min((map.width + map.height) as f32) as usize;
    let t2 = (tolerance as f64) * (tolerance as f64);
    for y in py.saturating_sub(t)..=py.saturating_add(t).min(region.height().saturating_sub(1)) {
        for x in px.saturating_sub(t)..=px.saturating_add(t).min(region.width().saturating_sub(1)) {
            let (dx, dy) = (x.abs_diff(px) as f64, y.abs_diff(py) as f64);
            if dx * dx + dy * dy <= t2 && region.contains(x, y) {
                return Ok(Some(true));
            }
        }
    }
    Ok(Some(false))
}
