//! Limits that keep work on user input bounded, checked before the work starts.
//!
//! Every size that comes from user input (a network description, an image, a region, a metric
//! setting) is multiplied with overflow checks, and work whose largest tensor would hold more
//! elements than the budget is refused with [`AttribError::TooLarge`], which carries the
//! estimate. The budget is one number for the whole process (default
//! [`DEFAULT_MAX_TENSOR_ELEMENTS`], 2³¹ elements, 8 GiB of `f32`); raise or lower it with
//! [`set_max_tensor_elements`].
//!
//! ```
//! use rap_attrib::limits;
//!
//! assert!(limits::check_elements("a 1000×1000 map", &[1000, 1000]).is_ok());
//! assert!(limits::check_elements("a huge map", &[1 << 20, 1 << 20]).is_err());
//! ```

use crate::error::{AttribError, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// The default budget: 2³¹ elements in one tensor (8 GiB of `f32`).
pub const DEFAULT_MAX_TENSOR_ELEMENTS: u64 = 1 << 31;

/// The largest kernel size, stride, dilation or padding a network description may give
/// (per axis): 65,536.
pub const MAX_GEOMETRY: usize = 1 << 16;

static MAX_TENSOR_ELEMENTS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_TENSOR_ELEMENTS);

/// The current budget: the most elements one tensor may hold.
pub fn max_tensor_elements() -> u64 {
    MAX_TENSOR_ELEMENTS.load(Ordering::Relaxed)
}

/// Sets the budget for the whole process (at least 1).
pub fn set_max_tensor_elements(elements: u64) {
    MAX_TENSOR_ELEMENTS.store(elements.max(1), Ordering::Relaxed);
}

/// The number of elements of a tensor of shape `dims`, or [`AttribError::TooLarge`] naming
/// `what` when the product overflows or exceeds the budget.
pub fn check_elements(what: &str, dims: &[usize]) -> Result<usize> {
    let mut n: u128 = 1;
    for &d in dims {
        n = n.saturating_mul(d as u128);
    }
    let limit = max_tensor_elements();
    if n > limit as u128 {
        return Err(AttribError::TooLarge {
            what: format!("{what} (shape {dims:?})"),
            elements: n.min(u64::MAX as u128) as u64,
            limit,
        });
    }
    Ok(n as usize)
}
