//! Line plots (perturbation curves) as PNG, drawn with plotters and the bundled DejaVu Sans.

// Indexing is checked by construction here: colours are picked modulo the palette's length.
#![allow(clippy::indexing_slicing)]

use crate::error::{AttribError, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Registers the bundled DejaVu Sans as plotters' "sans-serif" (once per process).
pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One panel of a [`plot_lines`] figure.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePanel {
    /// Title above the panel.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The x value of each point (shared by every series).
    pub x: Vec<f32>,
    /// Named series, each with one y value per x.
    pub series: Vec<(String, Vec<f32>)>,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f32, f32)>,
}

const COLOURS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn plot_error(path: &Path, e: impl std::fmt::Display) -> AttribError {
    AttribError::io_message(path.display().to_string(), format!("plotting failed: {e}"))
}

/// Draws panels side by side in a grid of `columns` columns and writes a PNG of
/// `panel_width × panel_height` pixels per panel. Series must have one finite value per x.
pub fn plot_lines(path: impl AsRef<Path>, panels: &[LinePanel], columns: usize, panel_size: (u32, u32)) -> Result<()> {
    let path = path.as_ref();
    if panels.is_empty() || columns == 0 || panel_size.0 < 100 || panel_size.1 < 100 {
        return Err(AttribError::InvalidParameter(format!(
            "plot: need ≥ 1 panel, ≥ 1 column and panels of at least 100x100 pixels; got {} panel(s), {columns} column(s), {:?}",
            panels.len(),
            panel_size
        )));
    }
    for p in panels {
        if let Some(bad) = p.x.iter().find(|v| !v.is_finite()) {
            return Err(AttribError::InvalidParameter(format!(
                "plot panel `{}`: x value {bad} is not finite; every x must be",
                p.title
            )));
        }
        if p.x.is_empty() || p.series.iter().any(|(_, y)| y.len() != p.x.len() || y.iter().any(|v| !v.is_finite())) {
            return Err(AttribError::InvalidParameter(format!(
                "plot panel `{}`: every series needs one finite value per x ({} x values)",
                p.title,
                p.x.len()
            )));
        }
        if let Some((lo, hi)) = p.y_range
            && !(lo.is_finite() && hi.is_finite() && lo < hi && (hi - lo).is_finite())
        {
            return Err(AttribError::InvalidParameter(format!(
                "plot panel `{}`: y_range = ({lo}, {hi}); expected finite bounds with low < high",
                p.title
            )));
        }
        // The axes' spans must be finite too (plotters loops on an infinite one).
        let span = |v: &mut dyn Iterator<Item = f32>| {
            let (lo, hi) = v.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
            lo > hi || ((hi - lo).is_finite() && (hi.abs() + (hi - lo).abs()).is_finite())
        };
        if !span(&mut p.x.iter().copied()) || !span(&mut p.series.iter().flat_map(|(_, y)| y.iter().copied())) {
            return Err(AttribError::InvalidParameter(format!(
                "plot panel `{}`: the x or y values span more than a float holds",
                p.title
            )));
        }
    }
    register_font();
    let rows = panels.len().div_ceil(columns);
    let columns = columns.min(panels.len());
    let elements = crate::limits::check_elements(
        "a plot picture",
        &[panel_size.1 as usize, rows, panel_size.0 as usize, columns, 3],
    )?;
    let (Ok(w), Ok(h)) = (u32::try_from(panel_size.0 as usize * columns), u32::try_from(panel_size.1 as usize * rows))
    else {
        return Err(AttribError::InvalidParameter(format!("plot: {rows}x{columns} panels of {panel_size:?} pixels")));
    };
    let mut buffer = vec![255u8; elements];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let areas = root.split_evenly((rows, columns));
        for (panel, area) in panels.iter().zip(areas) {
            let x0 = panel.x.iter().copied().fold(f32::INFINITY, f32::min);
            let x1 = panel.x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let ys = panel.series.iter().flat_map(|(_, y)| y.iter().copied());
            let (y0, y1) = ys.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
            let (y0, y1) = if y0.is_finite() { (y0, y1) } else { (0.0, 1.0) };
            let (y0, y1, pad) = match panel.y_range {
                Some((lo, hi)) if hi > lo => (lo, hi, 0.0),
                _ => (y0, y1, ((y1 - y0) * 0.05).max(y0.abs().max(y1.abs()) * 0.02).max(1e-3)),
            };
            let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(|e| plot_error(path, e))?;
            // Whole-number x values (pixels removed) get whole-number tick labels.
            let whole = panel.x.iter().all(|v| v.fract() == 0.0);
            let x_format = |v: &f32| if whole { format!("{}", v.round() as i64) } else { format!("{v}") };
            chart
                .configure_mesh()
                .x_label_formatter(&x_format)
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(|e| plot_error(path, e))?;
            for (i, (name, y)) in panel.series.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(
                        panel.x.iter().copied().zip(y.iter().copied()),
                        colour.stroke_width(2),
                    ))
                    .map_err(|e| plot_error(path, e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(|e| plot_error(path, e))?;
        }
        root.present().map_err(|e| plot_error(path, e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buffer).ok_or_else(|| plot_error(path, "buffer size"))?;
    img.save(path).map_err(|e| AttribError::io(path.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_draw_lines_and_reject_ragged_series() {
        let dir = std::env::temp_dir().join(format!("rap-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("curves.png");
        let panel = LinePanel {
            title: "MoRF".into(),
            x_label: "pixels removed".into(),
            y_label: "score".into(),
            x: vec![0.0, 100.0, 200.0],
            series: vec![("a".into(), vec![3.0, 2.0, 1.0]), ("b".into(), vec![3.0, 2.5, 2.4])],
            y_range: None,
        };
        plot_lines(&path, &[panel.clone(), panel.clone()], 2, (320, 240)).unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (640, 240));
        // Something other than white was drawn, including the first series' red.
        assert!(img.pixels().any(|p| p.0 == [214, 39, 40]));
        let ragged = LinePanel { series: vec![("a".into(), vec![1.0])], ..panel.clone() };
        assert!(plot_lines(&path, &[ragged], 1, (320, 240)).is_err());
        let nan = LinePanel { series: vec![("a".into(), vec![1.0, f32::NAN, 0.0])], ..panel };
        assert!(plot_lines(&path, &[nan], 1, (320, 240)).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
