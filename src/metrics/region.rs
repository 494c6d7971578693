//! Ground truth: bounding boxes and masks as pixel regions.

use crate::error::{AttribError, Result};
use std::path::Path;

/// An axis-aligned box in pixels, `[x1, x2) × [y1, y2)` (the end is exclusive: last pixel + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundingBox {
    /// First column.
    pub x1: usize,
    /// First row.
    pub y1: usize,
    /// One past the last column.
    pub x2: usize,
    /// One past the last row.
    pub y2: usize,
}

impl BoundingBox {
    /// A box from `[x1, y1, x2, y2]` with exclusive ends.
    pub fn new(x1: usize, y1: usize, x2: usize, y2: usize) -> Self {
        Self { x1, y1, x2, y2 }
    }
}

/// A set of pixels of a `width × height` picture: the object (inside) against the rest.
///
/// Built from boxes ([`Region::from_boxes`]) or a mask ([`Region::from_mask`],
/// [`Region::load_mask`]); [`Region::resize`] brings it to the network's input size the way the
/// photo was resized (a plain resize of the whole picture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    width: usize,
    height: usize,
    inside: Vec<bool>,
}

impl Region {
    /// A region from a row-major mask of `width × height` flags.
    pub fn from_mask(width: usize, height: usize, inside: Vec<bool>) -> Result<Self> {
        let n = width.checked_mul(height);
        if width == 0 || height == 0 || n != Some(inside.len()) {
            return Err(AttribError::InvalidParameter(format!(
                "a {width}x{height} mask needs width, height ≥ 1 and width·height flags, got {}",
                inside.len()
            )));
        }
        Ok(Self { width, height, inside })
    }

    /// The union of boxes in a `width × height` picture. A box must be non-empty and lie inside
    /// the picture.
    pub fn from_boxes(width: usize, height: usize, boxes: &[BoundingBox]) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(AttribError::InvalidParameter(format!(
                "a region of {width}x{height} pixels is not allowed; expected width, height ≥ 1"
            )));
        }
        let n = crate::limits::check_elements("a region", &[height, width])?;
        let mut inside = vec![false; n];
        for b in boxes {
            if b.x1 >= b.x2 || b.y1 >= b.y2 || b.x2 > width || b.y2 > height {
                return Err(AttribError::InvalidParameter(format!(
                    "box [{}, {}, {}, {}] is empty or leaves the {width}x{height} picture (x2, y2 are exclusive)",
                    b.x1, b.y1, b.x2, b.y2
                )));
            }
            for row in inside.chunks_mut(width).take(b.y2).skip(b.y1) {
                row.iter_mut().take(b.x2).skip(b.x1).for_each(|v| *v = true);
            }
        }
        Self::from_mask(width, height, inside)
    }

    /// Reads a mask picture (PNG, JPEG): a pixel is inside where its grey value is above 127.
    pub fn load_mask(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = crate::limits::read_file(path, crate::imaging::MAX_DECODE_BYTES)?;
        let img = crate::imaging::decode_rgb(&bytes).map_err(|message| AttribError::io_message(shown, message))?;
        let img = image::DynamicImage::ImageRgb8(img).into_luma8();
        let (w, h) = img.dimensions();
        Self::from_mask(w as usize, h as usize, img.pixels().map(|p| p.0[0] > 127).collect())
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The row-major flags.
    pub fn as_slice(&self) -> &[bool] {
        &self.inside
    }

    /// Whether pixel `(x, y)` is inside.
    pub fn contains(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.height && self.inside.get(y * self.width + x).copied().unwrap_or(false)
    }

    /// Number of pixels inside.
    pub fn count(&self) -> usize {
        self.inside.iter().filter(|&&b| b).count()
    }

    /// Pixels inside either region (same size required).
    pub fn union(&self, other: &Region) -> Result<Region> {
        if (self.width, self.height) != (other.width, other.height) {
            return Err(AttribError::InvalidParameter(format!(
                "cannot unite a {}x{} region with a {}x{} one",
                self.width, self.height, other.width, other.height
            )));
        }
        let inside = self.inside.iter().zip(&other.inside).map(|(a, b)| *a || *b).collect();
        Ok(Region { width: self.width, height: self.height, inside })
    }

    /// The tight box around the inside pixels, if any.
    pub fn bounding_box(&self) -> Option<BoundingBox> {
        let mut b: Option<BoundingBox> = None;
        for (y, row) in self.inside.chunks(self.width.max(1)).enumerate() {
            for (x, _) in row.iter().enumerate().filter(|(_, v)| **v) {
                {
                    let r = b.get_or_insert(BoundingBox::new(x, y, x + 1, y + 1));
                    r.x1 = r.x1.min(x);
                    r.y1 = r.y1.min(y);
                    r.x2 = r.x2.max(x + 1);
                    r.y2 = r.y2.max(y + 1);
                }
            }
        }
        b
    }

    /// The region resampled to `width × height` by nearest neighbour at pixel centres (each
    /// output pixel takes the source pixel under its centre), as a mask follows a plain resize
    /// of its photo. An error for a size of 0 or one over the budget ([`crate::limits`]).
    pub fn resize(&self, width: usize, height: usize) -> Result<Region> {
        if width == 0 || height == 0 {
            return Err(AttribError::InvalidParameter(format!(
                "resizing a region to {width}x{height} is not allowed; expected width, height ≥ 1"
            )));
        }
        let n = crate::limits::check_elements("a resized region", &[height, width])?;
        let sx = self.width as f64 / width as f64;
        let sy = self.height as f64 / height as f64;
        let mut inside = Vec::with_capacity(n);
        for y in 0..height {
            let src_y = (((y as f64 + 0.5) * sy) as usize).min(self.height.saturating_sub(1));
            for x in 0..width {
                let src_x = (((x as f64 + 0.5) * sx) as usize).min(self.width.saturating_sub(1));
                inside.push(self.contains(src_x, src_y));
            }
        }
        Ok(Region { width, height, inside })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_fill_exclusive_ranges_and_unite() {
        let r = Region::from_boxes(5, 4, &[BoundingBox::new(1, 1, 3, 2), BoundingBox::new(4, 3, 5, 4)]).unwrap();
        assert_eq!(r.count(), 3);
        assert!(r.contains(1, 1) && r.contains(2, 1) && r.contains(4, 3) && !r.contains(3, 1));
        assert_eq!(r.bounding_box(), Some(BoundingBox::new(1, 1, 5, 4)));
        assert!(Region::from_boxes(5, 4, &[BoundingBox::new(1, 1, 6, 2)]).is_err());
        assert!(Region::from_boxes(5, 4, &[BoundingBox::new(2, 1, 2, 2)]).is_err());
    }

    #[test]
    fn resize_follows_pixel_centres() {
        // A 4x2 mask whose left half is inside, doubled and halved.
        let r = Region::from_mask(4, 2, vec![true, true, false, false, true, true, false, false]).unwrap();
        let up = r.resize(8, 4).unwrap();
        assert_eq!(up.count(), 16);
        assert!(up.contains(3, 3) && !up.contains(4, 0));
        let down = r.resize(2, 1).unwrap();
        assert_eq!(down.as_slice(), &[true, false]);
        assert!(Region::from_mask(2, 2, vec![true]).is_err());
    }
}
