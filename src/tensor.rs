//! Small tensor helpers shared by the rules and layers.
//!
//! All activations inside the engine are rank-4 tensors: images are `[B, C, H, W]`, vectors are
//! `[B, F, 1, 1]`.

use burn::tensor::{Bool, Tensor, TensorData};

/// Safe division `a / b` where `b != 0`, else `0` (the reference code's `sd`).
pub fn safe_div<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let zero = b.clone().equal_elem(0.0);
    let denom = b.mask_fill(zero.clone(), 1.0);
    a.div(denom).mask_fill(zero, 0.0)
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
pub fn sample_sum(x: Tensor<4>) -> Tensor<4> {
    x.sum_dims(&[1, 2, 3])
}

/// Per-sample count of nonzero entries: `[B, ...] -> [B, 1, 1, 1]`.
pub fn sample_nonzero(x: Tensor<4>) -> Tensor<4> {
    x.not_equal_elem(0.0).float().sum_dims(&[1, 2, 3])
}

/// Mask of the nonzero entries, as floats (1 where `x != 0`).
pub fn nonzero_mask(x: Tensor<4>) -> Tensor<4> {
    x.not_equal_elem(0.0).float()
}

/// Whether any element is negative (reads one value back from the device).
pub fn any_negative(x: &Tensor<4>) -> bool {
    x.clone().lower_elem(0.0).any().into_scalar::<bool>()
}

/// Whether any element is positive (reads one value back from the device).
pub fn any_positive(x: &Tensor<4>) -> bool {
    x.clone().greater_elem(0.0).any().into_scalar::<bool>()
}

/// Whether all elements are finite (reads one value back from the device).
pub fn all_finite<const D: usize>(x: &Tensor<D>) -> bool {
    let bad: Tensor<D, Bool> = x.clone().is_finite().bool_not();
    !bad.any().into_scalar::<bool>()
}

/// The tensor's values as a `Vec<f32>` (row-major).
pub fn to_vec<const D: usize>(x: &Tensor<D>) -> Vec<f32> {
    x.to_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default()
}

/// Per-sample sums as host values.
pub fn sample_sums(x: &Tensor<4>) -> Vec<f32> {
    to_vec(&sample_sum(x.clone()))
}

/// Builds a rank-4 tensor from host values.
pub fn from_vec4(values: Vec<f32>, shape: [usize; 4], device: &burn::tensor::Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
