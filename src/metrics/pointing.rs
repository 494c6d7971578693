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
    let (px, py) = ((at % map.width) as i64, (at / map.width) as i64);
    let t = tolerance.floor() as i64;
    let t2 = (tolerance as f64) * (tolerance as f64);
    for dy in -t..=t {
        for dx in -t..=t {
            let (x, y) = (px + dx, py + dy);
            if x >= 0 && y >= 0 && ((dx * dx + dy * dy) as f64) <= t2 && region.contains(x as usize, y as usize) {
                return Ok(Some(true));
            }
        }
    }
    Ok(Some(false))
}
