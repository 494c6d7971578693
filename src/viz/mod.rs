//! Visualisation: relevance maps as heatmap pictures, and line plots of evaluation curves
//! ([`plot_lines`]).
//!
//! A heatmap is the channel sum of the input relevance, divided by `max|R|`, mapped to `[0, 1]`
//! by `(R + 1)/2` and coloured with the 'seismic' colour map (blue negative, white zero, red
//! positive), as the RAP reference's `main.py` does.

// Indexing is checked by construction here: the colour map indexes its own 5-entry anchor table with an index clamped to 0..=3.
#![allow(clippy::indexing_slicing)]

#[cfg(feature = "plots")]
mod plot;

#[cfg(feature = "plots")]
pub use plot::{LinePanel, plot_lines};

use crate::error::{AttribError, Result};
use crate::tensor::to_vec;
use burn::tensor::Tensor;
use image::RgbImage;
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
    let (wu, hu) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(wu), Ok(hu)) if wu > 0 && hu > 0 => (wu, hu),
        _ => {
            return Err(AttribError::InvalidParameter(format!(
                "heatmap: a {w}x{h} map is not allowed; expected 1..=2³² − 1 pixels a side"
            )));
        }
    };
    crate::limits::check_elements("a heatmap picture", &[h, w, 3])?;
    let map = relevance.clone().sum_dim(1);
    if !crate::tensor::all_finite(&map) {
        return Err(AttribError::NonFinite { what: "the relevance to draw as a heatmap".into() });
    }
    let v = to_vec(&map);
    let v = v.get(sample * h * w..(sample + 1) * h * w).unwrap_or(&[]);
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    let rgb = v.iter().flat_map(|x| seismic((x * scale + 1.0) / 2.0)).collect();
    Ok((wu, hu, rgb))
}

/// Writes the heatmap of one sample as a PNG.
pub fn save_heatmap_png(relevance: &Tensor<4>, sample: usize, path: impl AsRef<Path>) -> Result<()> {
    let (w, h, rgb) = heatmap_rgb(relevance, sample)?;
    let path = path.as_ref();
    image::save_buffer(path, &rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| AttribError::io(path.display().to_string(), e))
}

/// The heatmap of one sample as an image.
pub fn heatmap_image(relevance: &Tensor<4>, sample: usize) -> Result<RgbImage> {
    let (w, h, rgb) = heatmap_rgb(relevance, sample)?;
    RgbImage::from_raw(w, h, rgb).ok_or_else(|| AttribError::InvalidParameter(format!("heatmap: {w}x{h} pixels")))
}

/// The heatmap blended over the photo: each pixel mixes the photo with the heatmap colour in
/// proportion to `alpha · |R|/max|R|`, so irrelevant pixels show the photo.
///
/// The photo must have the relevance map's size.
pub fn overlay(photo: &RgbImage, relevance: &Tensor<4>, sample: usize, alpha: f32) -> Result<RgbImage> {
    let [_, _, h, w] = relevance.dims();
    if (photo.width() as usize, photo.height() as usize) != (w, h) {
        return Err(AttribError::Shape {
            layer: "overlay".into(),
            expected: format!("a {w}x{h} photo"),
            got: vec![photo.height() as usize, photo.width() as usize],
        });
    }
    let heat = heatmap_image(relevance, sample)?;
    if !alpha.is_finite() || !(0.0..=1.0).contains(&alpha) {
        return Err(AttribError::InvalidParameter(format!(
            "overlay: `alpha` = {alpha} is not allowed; expected 0..=1"
        )));
    }
    let v = to_vec(&relevance.clone().sum_dim(1));
    let v = v.get(sample * h * w..(sample + 1) * h * w).unwrap_or(&[]);
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let mut out = photo.clone();
    for ((p, q), r) in out.pixels_mut().zip(heat.pixels()).zip(v) {
        let a = if max > 0.0 { (alpha * r.abs() / max).clamp(0.0, 1.0) } else { 0.0 };
        for (pc, qc) in p.0.iter_mut().zip(q.0) {
            *pc = ((1.0 - a) * *pc as f32 + a * qc as f32).round() as u8;
        }
    }
    Ok(out)
}

/// Places pictures of equal height side by side with a white 4-pixel gap.
pub fn side_by_side(images: &[RgbImage]) -> RgbImage {
    let gap = 4u32;
    let h = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let w = images
        .iter()
        .map(|i| i.width())
        .fold(0u32, u32::saturating_add)
        .saturating_add(gap.saturating_mul(images.len().saturating_sub(1) as u32));
    let mut out = RgbImage::from_pixel(w.max(1), h.max(1), image::Rgb([255, 255, 255]));
    let mut x0 = 0;
    for img in images {
        image::imageops::replace(&mut out, img, x0 as i64, 0);
        x0 += img.width() + gap;
    }
    out
}

/// Height of the title strip above each picture of a panel, in pixels.
pub const PANEL_TITLE_HEIGHT: u32 = 22;

/// Width of the colour scale at the right of a panel (bar and labels), in pixels.
pub const PANEL_SCALE_WIDTH: u32 = 70;

/// One call for the usual figure: the photo, then the heatmap of each named relevance tensor
/// (for example `("RAP", &r1)` and `("LRP-α1β0", &r2)`) for one sample, side by side, each with
/// its name above it and the colour scale at the right (`+max|R|`, `0`, `−max|R|` of each map:
/// every heatmap is scaled by its own largest absolute value), written as a PNG.
///
/// The picture is `Σ widths + 4·gaps + PANEL_SCALE_WIDTH` wide and `height + PANEL_TITLE_HEIGHT`
/// high.
pub fn save_panel(
    path: impl AsRef<Path>,
    photo: &RgbImage,
    relevances: &[(&str, &Tensor<4>)],
    sample: usize,
) -> Result<()> {
    let path = path.as_ref();
    let mut pictures = vec![photo.clone()];
    let mut titles = vec!["photo"];
    for (name, r) in relevances {
        pictures.push(heatmap_image(r, sample)?);
        titles.push(name);
    }
    let width: usize = pictures.iter().map(|p| p.width() as usize + 4).sum::<usize>() + PANEL_SCALE_WIDTH as usize;
    let height = pictures.iter().map(|p| p.height() as usize).max().unwrap_or(0) + PANEL_TITLE_HEIGHT as usize;
    crate::limits::check_elements("a panel picture", &[height, width, 3])?;
    let strip = side_by_side(&pictures);
    let (w, h) = (strip.width() + PANEL_SCALE_WIDTH, strip.height() + PANEL_TITLE_HEIGHT);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, &strip, 0, PANEL_TITLE_HEIGHT as i64);
    let draw_error = |e: &dyn std::fmt::Display| {
        AttribError::io_message(path.display().to_string(), format!("drawing the panel failed: {e}"))
    };
    {
        use plotters::prelude::*;
        plot::register_font();
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (w, h)).into_drawing_area();
        let font = ("sans-serif", 15).into_font().color(&BLACK);
        let centred = font.pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
        let mut x0 = 0i32;
        for (picture, title) in pictures.iter().zip(&titles) {
            let cx = x0 + picture.width() as i32 / 2;
            root.draw_text(title, &centred, (cx, PANEL_TITLE_HEIGHT as i32 / 2)).map_err(|e| draw_error(&e))?;
            x0 += picture.width() as i32 + 4;
        }
        // The colour scale: the seismic map from +max (top) to −max (bottom).
        let (bar_x, top, bottom) = (x0 + 4, PANEL_TITLE_HEIGHT as i32, h as i32 - 1);
        let span = (bottom - top).max(1);
        for y in top..=bottom {
            let t = 1.0 - (y - top) as f32 / span as f32;
            let [r, g, b] = seismic(t);
            root.draw(&Rectangle::new([(bar_x, y), (bar_x + 12, y + 1)], RGBColor(r, g, b).filled()))
                .map_err(|e| draw_error(&e))?;
        }
        let small = ("sans-serif", 12).into_font().color(&BLACK);
        for (label, y) in [("+max|R|", top + 6), ("0", (top + bottom) / 2), ("−max|R|", bottom - 6)] {
            let left = small.pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            ));
            root.draw_text(label, &left, (bar_x + 16, y)).map_err(|e| draw_error(&e))?;
        }
        root.present().map_err(|e| draw_error(&e))?;
    }
    canvas.save(path).map_err(|e| AttribError::io(path.display().to_string(), e))
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
        let device = burn::tensor::Device::default();
        let r = Tensor::<4>::from_data([[[[0.0, 2.0], [-2.0, 1.0]]]], &device);
        let (w, h, rgb) = heatmap_rgb(&r, 0).unwrap();
        assert_eq!((w, h), (2, 2));
        assert_eq!(&rgb[0..3], &[255, 255, 255]);
        assert_eq!(&rgb[3..6], &seismic(1.0));
        assert_eq!(&rgb[6..9], &seismic(0.0));
        assert!(heatmap_rgb(&r, 1).is_err());
    }

    #[test]
    fn overlay_keeps_the_photo_where_relevance_is_zero_and_panels_line_up() {
        let device = burn::tensor::Device::default();
        let r = Tensor::<4>::from_data([[[[0.0, 2.0], [-2.0, 1.0]]]], &device);
        let photo = RgbImage::from_pixel(2, 2, image::Rgb([10, 20, 30]));
        let o = overlay(&photo, &r, 0, 1.0).unwrap();
        assert_eq!(o.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(o.get_pixel(1, 0).0, seismic(1.0));
        assert!(overlay(&RgbImage::new(3, 2), &r, 0, 1.0).is_err());
        let p = side_by_side(&[photo.clone(), photo]);
        assert_eq!((p.width(), p.height()), (8, 2));
        assert_eq!(p.get_pixel(2, 0).0, [255, 255, 255]);
    }
}
