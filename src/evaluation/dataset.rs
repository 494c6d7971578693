//! Photos with ground truth: the bundled Pascal VOC sample or a user's directory.

use crate::error::{AttribError, Result};
use crate::metrics::{BoundingBox, Region};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One photo and its ground truth, at the photo's own size.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Sample {
    /// A name for reports (the file stem).
    pub name: String,
    /// The photo.
    pub image: PathBuf,
    /// Photo width in pixels.
    pub width: usize,
    /// Photo height in pixels.
    pub height: usize,
    /// Object boxes (for the outside–inside ratio); from the mask's tight box when only a mask
    /// is given.
    pub boxes: Vec<BoundingBox>,
    /// The object mask (for segmentation and the pointing game), if one is given.
    pub mask: Option<Region>,
    /// The class to explain; `None` explains the model's prediction.
    pub label: Option<usize>,
}

impl Sample {
    /// The boxes as a region.
    pub fn box_region(&self) -> Result<Region> {
        Region::from_boxes(self.width, self.height, &self.boxes)
    }

    /// The mask, or the boxes where no mask is given.
    pub fn mask_region(&self) -> Result<Region> {
        match &self.mask {
            Some(m) => Ok(m.clone()),
            None => self.box_region(),
        }
    }
}

/// Photos with ground truth.
///
/// # Directory format ([`Dataset::load`])
///
/// Either a manifest `labels.json` in the directory (the format of the bundled Pascal VOC sample,
/// `assets/images/voc/labels.json`: `image`, `width`, `height`, and `instances`, each with a
/// `mask` file and `bbox_xyxy`; all instances together are the object), or, for every photo
/// `NAME.jpg`/`NAME.jpeg`/`NAME.png` (files whose stem contains a `.` are skipped, so sidecar
/// masks are not taken for photos), at least one of
///
/// - `NAME.mask.png`: the object mask, grey value above 127 = object;
/// - `NAME.json`: `{"boxes": [[x1, y1, x2, y2], …], "label": 281}` with pixel boxes whose
///   `x2`/`y2` are exclusive; `label` (optional) is the class to explain.
///
/// Photos without either are skipped and counted ([`Dataset::skipped`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Dataset {
    /// The samples, sorted by name.
    pub samples: Vec<Sample>,
    /// Photos found without ground truth.
    pub skipped: Vec<PathBuf>,
}

fn io(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> AttribError {
    AttribError::io(path.display().to_string(), e)
}

fn spec_error(path: &Path, what: impl std::fmt::Display) -> AttribError {
    AttribError::io_message(path.display().to_string(), format!("bad ground truth: {what}"))
}

fn parse_box(v: &Value, path: &Path) -> Result<BoundingBox> {
    let a = v.as_array().filter(|a| a.len() == 4).ok_or_else(|| spec_error(path, "a box must be [x1, y1, x2, y2]"))?;
    let n: Vec<usize> = a
        .iter()
        .map(|x| x.as_u64().map(|u| u as usize).ok_or_else(|| spec_error(path, "box coordinates must be integers ≥ 0")))
        .collect::<Result<_>>()?;
    match n.as_slice() {
        &[x1, y1, x2, y2] => Ok(BoundingBox::new(x1, y1, x2, y2)),
        _ => Err(spec_error(path, "a box must be [x1, y1, x2, y2]")),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = crate::limits::read_file(path, 64 << 20)?;
    serde_json::from_slice(&bytes).map_err(|e| spec_error(path, e))
}

fn image_size(path: &Path) -> Result<(usize, usize)> {
    let (w, h) = image::image_dimensions(path).map_err(|e| io(path, e))?;
    Ok((w as usize, h as usize))
}

impl Dataset {
    /// Loads a directory in the format above.
    pub fn load(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref();
        let manifest = dir.join("labels.json");
        if manifest.is_file() {
            return Ok(Dataset { samples: vec![Self::manifest_sample(dir, &manifest)?], skipped: Vec::new() });
        }
        let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        let mut photos: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) && !stem.contains('.')
            })
            .collect();
        photos.sort();
        let mut out = Dataset::default();
        for photo in photos {
            let stem = photo.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
            let mask_path = dir.join(format!("{stem}.mask.png"));
            let json_path = dir.join(format!("{stem}.json"));
            if !mask_path.is_file() && !json_path.is_file() {
                out.skipped.push(photo);
                continue;
            }
            let (width, height) = image_size(&photo)?;
            let mask = if mask_path.is_file() {
                let m = Region::load_mask(&mask_path)?;
                if (m.width(), m.height()) != (width, height) {
                    return Err(spec_error(
                        &mask_path,
                        format!("mask is {}x{} but the photo is {width}x{height}", m.width(), m.height()),
                    ));
                }
                Some(m)
            } else {
                None
            };
            let (mut boxes, mut label) = (Vec::new(), None);
            if json_path.is_file() {
                let v = read_json(&json_path)?;
                if let Some(list) = v.get("boxes") {
                    let list = list.as_array().ok_or_else(|| spec_error(&json_path, "`boxes` must be a list"))?;
                    boxes = list.iter().map(|b| parse_box(b, &json_path)).collect::<Result<_>>()?;
                }
                if let Some(l) = v.get("label") {
                    label = Some(
                        l.as_u64().ok_or_else(|| spec_error(&json_path, "`label` must be a class index"))? as usize
                    );
                }
            }
            if boxes.is_empty() {
                match mask.as_ref().and_then(Region::bounding_box) {
                    Some(b) => boxes.push(b),
                    None => return Err(spec_error(&photo, "no boxes and an empty (or missing) mask")),
                }
            }
            let sample = Sample { name: stem, image: photo, width, height, boxes, mask, label };
            sample.box_region()?;
            out.samples.push(sample);
        }
        if out.samples.is_empty() {
            return Err(AttribError::InvalidParameter(format!(
                "{}: no photo with ground truth (NAME.jpg with NAME.mask.png or NAME.json, or a labels.json manifest)",
                dir.display()
            )));
        }
        Ok(out)
    }

    fn manifest_sample(dir: &Path, manifest: &Path) -> Result<Sample> {
        let v = read_json(manifest)?;
        let image = match v.get("image") {
            None => dir.join("rgb.jpg"),
            Some(Value::String(file)) => inside(dir, file, manifest, "image")?,
            Some(other) => {
                return Err(spec_error(manifest, format!("`image` must be a file name (a string), got {other}")));
            }
        };
        let (width, height) = image_size(&image)?;
        let instances = v
            .get("instances")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| spec_error(manifest, "`instances` must be a non-empty list"))?;
        let mut mask: Option<Region> = None;
        let mut boxes = Vec::new();
        for inst in instances {
            boxes.push(parse_box(inst.get("bbox_xyxy").unwrap_or(&Value::Null), manifest)?);
            if let Some(file) = inst.get("mask").and_then(Value::as_str) {
                let m = Region::load_mask(inside(dir, file, manifest, "mask")?)?;
                mask = Some(match mask {
                    Some(prev) => prev.union(&m)?,
                    None => m,
                });
            }
        }
        if let Some(m) = &mask
            && (m.width(), m.height()) != (width, height)
        {
            return Err(spec_error(
                manifest,
                format!("masks are {}x{}, the photo {width}x{height}", m.width(), m.height()),
            ));
        }
        let name = image.file_stem().and_then(|s| s.to_str()).unwrap_or("image").to_string();
        // One documented type for labels, as in the per-photo JSON: a class index.
        let label = match v.get("label") {
            None | Some(Value::Null) => None,
            Some(l) => Some(l.as_u64().and_then(|l| usize::try_from(l).ok()).ok_or_else(|| {
                spec_error(manifest, format!("`label` must be a class index (a whole number ≥ 0), got {l}"))
            })?),
        };
        let sample = Sample { name, image, width, height, boxes, mask, label };
        sample.box_region()?;
        Ok(sample)
    }
}

/// `dir/file` for a file a manifest names, refused unless it stays inside `dir`: a relative path
/// of plain names (no `..`, no root, no drive).
fn inside(dir: &Path, file: &str, manifest: &Path, field: &str) -> Result<PathBuf> {
    use std::path::Component;
    let rel = Path::new(file);
    if file.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(spec_error(
            manifest,
            format!(
                "`{field}` = {file:?} leaves the dataset folder; expected a path inside it (no `..`, not absolute)"
            ),
        ));
    }
    Ok(dir.join(rel))
}
