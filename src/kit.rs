//! Tensor helpers for rule and op authors: the pieces the crate's own rules are written with.
//!
//! A rule of your own ([`Rule`](crate::Rule)) usually needs no more than
//! [`z_step`](crate::rules::z_step) and these; everything else of the engine stays private.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use rap_attrib::kit::{neg, pos, safe_div, to_vec};
//!
//! let device = Device::default();
//! let x = Tensor::<4>::from_data([[[[1.0, -2.0]]]], &device);
//! assert_eq!(to_vec(&pos(x.clone())), vec![1.0, 0.0]);
//! assert_eq!(to_vec(&neg(x.clone())), vec![0.0, -2.0]);
//! // The reference's safe divide: 0 where the denominator is 0.
//! let z = Tensor::<4>::from_data([[[[2.0, 0.0]]]], &device);
//! assert_eq!(to_vec(&safe_div(x, z)), vec![0.5, 0.0]);
//! ```
//!
//! # Shapes
//!
//! The engine's activations are rank-4 tensors (`[B, C, H, W]`, vectors as `[B, F, 1, 1]`); the
//! per-sample helpers reduce over every axis but the batch and keep the rank (`[B, 1, 1, 1]`).

pub use crate::tensor::{
    all_finite, neg, pos, safe_div, sample_max, sample_min, sample_sum, sample_sums, stabilize, to_vec,
};
