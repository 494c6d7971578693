//! Images in: decoding, resizing exactly as Pillow's bilinear filter does, and normalising.
//!
//! The resize reproduces Pillow's `Image.resize((w, h), Image.BILINEAR)` bit for bit (its
//! triangle filter widened by the scale when shrinking, 22-bit fixed-point coefficients, a
//! horizontal pass rounded to 8 bits, then a vertical pass), so a photo prepared here is the
//! tensor a torchvision pipeline with a plain Pillow resize (no crop) would feed the model.

// Indexing is checked by construction here: the resize indexes the pixel buffers it allocates from the image's own size and Pillow's coefficient windows, which stay inside the source.
#![allow(clippy::indexing_slicing)]

use crate::error::{AttribError, Result};
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use std::path::Path;

pub use crate::tensor::{IMAGENET_MEAN, IMAGENET_STD};

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The largest width or height of an image this module decodes: 16,384 pixels.
pub const MAX_IMAGE_SIDE: u32 = 1 << 14;

/// The most memory the decoder may allocate for one image: 1 GiB.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Decodes a PNG or JPEG file into RGB pixels.
///
/// A file that is not a complete PNG or JPEG is an error: a corrupt or truncated one (a PNG
/// without its `IEND` chunk, a JPEG without its end-of-image marker), as is one wider or higher
/// than [`MAX_IMAGE_SIDE`] or whose decoding would allocate more than [`MAX_DECODE_BYTES`] (no
/// decompression bomb).
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let bytes = crate::limits::read_file(path, MAX_DECODE_BYTES)?;
    decode_rgb(&bytes).map_err(|message| AttribError::io_message(shown, message))
}

/// Decodes PNG or JPEG bytes into RGB pixels, with the checks of [`load_rgb`].
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let format = image::guess_format(bytes).map_err(|e| format!("not a PNG or JPEG image: {e}"))?;
    match format {
        image::ImageFormat::Png => {
            // The last chunk of a complete PNG is IEND (length 0, then its CRC).
            let complete = bytes.len() >= 12 && bytes.get(bytes.len() - 8..bytes.len() - 4) == Some(b"IEND".as_slice());
            if !complete {
                return Err("truncated or corrupt PNG: the file does not end with its IEND chunk".into());
            }
        }
        image::ImageFormat::Jpeg => {
            // A complete JPEG has the end-of-image marker FF D9 after its last scan (FF DA);
            // an EXIF thumbnail's own marker comes before the main scans, and trailing bytes
            // after the marker are tolerated.
            let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap_or(0);
            if !bytes.get(last_scan..).is_some_and(|tail| tail.windows(2).any(|w| w == [0xFF, 0xD9])) {
                return Err("truncated or corrupt JPEG: no end-of-image marker after its last scan".into());
            }
        }
        other => return Err(format!("{other:?} images are not supported; expected PNG or JPEG")),
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| format!("not a decodable PNG/JPEG image: {e}"))?;
    Ok(img.to_rgb8())
}

/// Pillow's per-axis coefficients: for each output index, the first input index and the
/// fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let mut k: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                for v in &mut k {
                    *v /= ww;
                }
            }
            let fixed = k
                .iter()
                .map(|&w| {
                    let s = w * (1u32 << PRECISION_BITS) as f64;
                    if w < 0.0 { (-0.5 + s) as i32 } else { (0.5 + s) as i32 }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes to `width × height` exactly as Pillow's `resize(..., Image.BILINEAR)` does for an
/// RGB image (no crop, aspect ratio not kept).
pub fn resize_bilinear(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    let src = img.as_raw();
    // Horizontal pass (skipped when the width is unchanged, as in Pillow).
    let horiz: Vec<u8> = if w1 != w0 {
        let kx = coefficients(w0, w1);
        let mut out = vec![0u8; h0 * w1 * 3];
        for y in 0..h0 {
            for (xx, (xmin, k)) in kx.iter().enumerate() {
                for c in 0..3 {
                    let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                    for (i, &kv) in k.iter().enumerate() {
                        ss += src[(y * w0 + xmin + i) * 3 + c] as i32 * kv;
                    }
                    out[(y * w1 + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    let out: Vec<u8> = if h1 != h0 {
        let ky = coefficients(h0, h1);
        let mut out = vec![0u8; h1 * w1 * 3];
        for (yy, (ymin, k)) in ky.iter().enumerate() {
            for x in 0..w1 {
                for c in 0..3 {
                    let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                    for (i, &kv) in k.iter().enumerate() {
                        ss += horiz[((ymin + i) * w1 + x) * 3 + c] as i32 * kv;
                    }
                    out[(yy * w1 + x) * 3 + c] = clip8(ss);
                }
            }
        }
        out
    } else {
        horiz
    };
    // The buffer is `width · height · 3` bytes by construction.
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// `[1, 3, H, W]` tensor of `(pixel/255 − mean)/std` per RGB channel, in float32.
///
/// Every `mean` must be finite and every `std` finite and non-zero, else
/// [`AttribError::InvalidParameter`] naming the channel (a zero `std` would give infinities).
pub fn to_tensor(img: &RgbImage, mean: [f32; 3], std: [f32; 3], device: &Device) -> Result<Tensor<4>> {
    for c in 0..3 {
        if !mean[c].is_finite() || !std[c].is_finite() || std[c] == 0.0 {
            return Err(AttribError::InvalidParameter(format!(
                "to_tensor: channel {c} has mean {} and std {}; expected a finite mean and a finite, non-zero std",
                mean[c], std[c]
            )));
        }
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let mut v = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for i in 0..h * w {
            v[c * h * w + i] = (raw[i * 3 + c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    Ok(Tensor::from_data(TensorData::new(v, [1, 3, h, w]), device))
}

/// Loads a photo for an ImageNet model: Pillow-exact bilinear resize to `size × size`, then
/// ImageNet normalisation. Returns the resized picture (for overlays) and the `[1, 3, size,
/// size]` tensor.
pub fn load_imagenet(path: impl AsRef<Path>, size: u32, device: &Device) -> Result<(RgbImage, Tensor<4>)> {
    if size == 0 || size > MAX_IMAGE_SIDE {
        return Err(AttribError::InvalidParameter(format!(
            "image `size` = {size} is not allowed; expected 1..={MAX_IMAGE_SIDE}"
        )));
    }
    // The resized picture and its tensor count against the memory bound of one call, as the
    // explanation that follows does (the decoded photo is bounded by MAX_DECODE_BYTES).
    let side = u64::from(size);
    let bytes = side * side * 3 * (1 + 4);
    let limit = crate::limits::max_call_bytes();
    if bytes > limit {
        return Err(AttribError::MemoryBudget { what: format!("a {size}×{size} photo and its tensor"), bytes, limit });
    }
    let img = load_rgb(path)?;
    let small = resize_bilinear(&img, size, size);
    let t = to_tensor(&small, IMAGENET_MEAN, IMAGENET_STD, device)?;
    Ok((small, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (n_in, n_out) in [(451, 224), (300, 224), (100, 224), (7, 3)] {
            for (_, k) in coefficients(n_in, n_out) {
                let s: i64 = k.iter().map(|&v| v as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{n_in}->{n_out}: {s}");
            }
        }
    }

    #[test]
    fn resizing_a_constant_image_keeps_it() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([10, 200, 255]));
        let out = resize_bilinear(&img, 16, 40);
        assert!(out.pixels().all(|p| p.0 == [10, 200, 255]));
    }
}
