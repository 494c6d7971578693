//! Visualisation: relevance maps as heatmap pictures.
//!
//! A heatmap is the channel sum of the input relevance, divided by `max|R|`, mapped to `[0, 1]`
//! by `(R + 1)/2` and coloured with the 'seismic' colour map (blue negative, white zero, red
//! positive), as the RAP reference's `main.py` does.

use crate::error::{AttribError, Result};
use crate::tensor::to_vec;
use burn::tensor::Tensor;
use std::path::Path;

/// Matplotlib's 'seismic' colour map at `t ∈ [0, 1]`: dark blue → blue → white → red → dark red.
pub fn seismic(t: f32) -> [u8; 3] {
    // Anchors of the map: (0, 0, 0.3), (0, 0, 1), (1, 1, 1), (1, 0, 0), (0.5, 0, 0).
    const ANCHORS: [[f32; 3]; 5] =
        [[0.0, 0.0, 0.3], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.5 };
    let pos = t * 4.0;
    let i = (pos.floor() as usize).min(3);
    let f = pos - i as f32;
    let c = |k: usize| ANCHORS[i][k] + (ANCHORS[i + 1][k] - ANCHORS[i][k]) * f;
    [0, 1, 2].map(|k| (c(k) * 255.0).round() as u8)
}

/// RGB pixels of the heatmap of one sample: `relevance` is `[B, C, H, W]`; returns `(W, H, rgb)`.
pub fn heatmap_rgb(relevance: &Tensor<4>, sample: usize) -> Result<(u32, u32, Vec<u8>)> {
    let [b, _, h, w] = relevance.dims();
    if sample >= b {
        return Err(AttribError::TargetOutOfRange { sample, class: sample, classes: b });
    }
    let map = relevance.clone().sum_dim(1);
    let v = to_vec(&map);
    let v = &v[sample * h * w..(sample + 1) * h * w];
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    let rgb = v.iter().flat_map(|x| seismic((x * scale + 1.0) / 2.0)).collect();
    Ok((w as u32, h as u32, rgb))
}

/// Writes the heatmap of one sample as a PNG.
pub fn save_heatmap_png(relevance: &Tensor<4>, sample: usize, path: impl AsRef<Path>) -> Result<()> {
    let (w, h, rgb) = heatmap_rgb(relevance, sample)?;
    let path = path.as_ref();
    image::save_buffer(path, &rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| AttribError::Io { path: path.display().to_string(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seismic_ends_and_middle() {
        assert_eq!(seismic(0.5), [255, 255, 255]);
        assert_eq!(seismic(0.0), [0, 0, 77]);
        assert_eq!(seismic(1.0), [128, 0, 0]);
        assert_eq!(seismic(0.75), [255, 0, 0]);
        assert_eq!(seismic(f32::NAN), [255, 255, 255]);
    }

    #[test]
    fn heatmap_is_white_at_zero_and_red_at_the_maximum() {
        let device = burn::tensor::Device::flex();
        let r = Tensor::<4>::from_data([[[[0.0, 2.0], [-2.0, 1.0]]]], &device);
        let (w, h, rgb) = heatmap_rgb(&r, 0).unwrap();
        assert_eq!((w, h), (2, 2));
        assert_eq!(&rgb[0..3], &[255, 255, 255]);
        assert_eq!(&rgb[3..6], &seismic(1.0));
        assert_eq!(&rgb[6..9], &seismic(0.0));
        assert!(heatmap_rgb(&r, 1).is_err());
    }
}
