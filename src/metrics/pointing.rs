//! The pointing game (Zhang et al. 2016).

use super::{Region, heatmaps_with_regions};
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
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(AttribError::InvalidParameter(format!(
            "pointing game: tolerance must be a finite number of pixels ≥ 0, got {tolerance}"
        )));
    }
    let maps = heatmaps_with_regions(relevance, regions, "pointing game")?;
    Ok(maps
        .iter()
        .zip(regions)
        .map(|(m, r)| {
            let (mut best, mut at) = (f32::NEG_INFINITY, 0);
            let mut lowest = f32::INFINITY;
            for (i, &v) in m.values.iter().enumerate() {
                if v > best {
                    best = v;
                    at = i;
                }
                lowest = lowest.min(v);
            }
            if best == lowest {
                return None;
            }
            let (px, py) = ((at % m.width) as i64, (at / m.width) as i64);
            let t = tolerance.floor() as i64;
            let t2 = (tolerance as f64) * (tolerance as f64);
            for dy in -t..=t {
                for dx in -t..=t {
                    let (x, y) = (px + dx, py + dy);
                    if x >= 0 && y >= 0 && ((dx * dx + dy * dy) as f64) <= t2 && r.contains(x as usize, y as usize) {
                        return Some(true);
                    }
                }
            }
            Some(false)
        })
        .collect())
}
