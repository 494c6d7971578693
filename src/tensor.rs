//! Small tensor helpers shared by the rules and layers.
//!
//! All activations inside the engine are rank-4 tensors: images are `[B, C, H, W]`, vectors are
//! `[B, F, 1, 1]`.

use burn::tensor::Tensor;

/// ImageNet channel means (RGB), torchvision's normalisation.
#[cfg(any(feature = "images", feature = "zoo"))]
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
#[cfg(any(feature = "images", feature = "zoo"))]
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Safe division `a / b` where `b != 0`, else `0` (the reference code's `sd`).
pub fn safe_div<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    // The quotients at b = 0 (±inf or NaN) are replaced, so no second pass over b is needed.
    let zero = b.clone().equal_elem(0.0);
    a.div(b).mask_fill(zero, 0.0)
}

/// `x⁺ = max(x, 0)`.
pub fn pos<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clamp_min(0.0)
}

/// `x⁻ = min(x, 0)`.
pub fn neg<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clamp_max(0.0)
}

/// Adds `eps · sign(z)` to `z`, with `sign(0) = +1`, as Zennit's stabiliser does.
pub fn stabilize<const D: usize>(z: Tensor<D>, eps: f64) -> Tensor<D> {
    let negative = z.clone().lower_elem(0.0);
    let signed = z.ones_like().mask_fill(negative, -1.0);
    z + signed.mul_scalar(eps)
}

/// Per-sample sum over every non-batch dimension: `[B, ...] -> [B, 1, 1, 1]`.
///
/// Reduced one axis at a time (W, then H, then C): burn 0.22.1's wgpu reduction of one long
/// axis (hundreds of thousands of elements, as `sum_dims(&[1, 2, 3])` or a flattened sum makes)
/// drops elements on Mesa's software Vulkan driver, while short axes reduce correctly.
pub fn sample_sum(x: Tensor<4>) -> Tensor<4> {
    x.sum_dim(3).sum_dim(2).sum_dim(1)
}

/// Per-sample minimum: `[B, ...] -> [B, 1, 1, 1]` (reduced axis by axis, see [`sample_sum`]).
pub fn sample_min(x: Tensor<4>) -> Tensor<4> {
    x.min_dim(3).min_dim(2).min_dim(1)
}

/// Per-sample maximum: `[B, ...] -> [B, 1, 1, 1]` (reduced axis by axis, see [`sample_sum`]).
pub fn sample_max(x: Tensor<4>) -> Tensor<4> {
    x.max_dim(3).max_dim(2).max_dim(1)
}

/// Whether all elements are finite. Reduced on the device axis by axis, so only one boolean
/// is read back; a tensor with an axis longer than 65,536 is checked on the host values instead
/// (see [`sample_sum`]: burn 0.22.1's wgpu reduction of one long axis can drop elements).
pub fn all_finite<const D: usize>(x: &Tensor<D>) -> bool {
    if x.dims().iter().any(|&n| n > 65_536) {
        return to_vec(x).iter().all(|v| v.is_finite());
    }
    let mut bad = x.clone().is_finite().bool_not();
    for d in (0..D).rev() {
        bad = bad.any_dim(d);
    }
    !bad.into_scalar::<bool>()
}

/// The tensor's values as a `Vec<f32>` (row-major).
pub fn to_vec<const D: usize>(x: &Tensor<D>) -> Vec<f32> {
    x.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default()
}

/// Per-sample sums as host values.
pub fn sample_sums(x: &Tensor<4>) -> Vec<f32> {
    to_vec(&sample_sum(x.clone()))
}
