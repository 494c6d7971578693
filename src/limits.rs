//! Limits that keep work on user input bounded, checked before the work starts.
//!
//! Every size that comes from user input (a network description, an image, a region, a metric
//! setting) is multiplied with overflow checks, and work whose largest tensor would hold more
//! elements than the budget is refused with [`AttribError::TooLarge`], which carries the
//! estimate. The process-wide budget (default [`DEFAULT_MAX_TENSOR_ELEMENTS`], 2³¹ elements,
//! 8 GiB of `f32`) is raised or lowered with [`set_max_tensor_elements`]; an explainer can run
//! under limits of its own ([`Limits`], [`Explainer::with_limits`](crate::Explainer::with_limits)),
//! which hold for the calls it makes on its thread and leave every other caller alone.
//!
//! ```
//! use rap_attrib::limits;
//!
//! assert!(limits::check_elements("a 1000×1000 map", &[1000, 1000]).is_ok());
//! assert!(limits::check_elements("a huge map", &[1 << 20, 1 << 20]).is_err());
//! ```

use crate::error::{AttribError, Result};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The default budget: 2³¹ elements in one tensor (8 GiB of `f32`).
pub const DEFAULT_MAX_TENSOR_ELEMENTS: u64 = 1 << 31;

/// The largest kernel size, stride, dilation or padding a network description may give
/// (per axis): 65,536.
pub const MAX_GEOMETRY: usize = 1 << 16;

static MAX_TENSOR_ELEMENTS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_TENSOR_ELEMENTS);

thread_local! {
    /// The budget of the [`Limits::scope`] running on this thread, if any.
    static SCOPED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The current budget: the most elements one tensor may hold (the running explainer's
/// [`Limits`] on this thread, else the process-wide budget).
pub fn max_tensor_elements() -> u64 {
    SCOPED.with(Cell::get).unwrap_or_else(|| MAX_TENSOR_ELEMENTS.load(Ordering::Relaxed))
}

/// Limits for one explainer's calls ([`Explainer::with_limits`](crate::Explainer::with_limits)).
///
/// The default follows the process-wide budget ([`set_max_tensor_elements`]) at the time of
/// each call; a set value holds for this explainer alone.
///
/// ```
/// use rap_attrib::limits::{self, Limits};
///
/// let tight = Limits::default().with_max_tensor_elements(1000);
/// assert!(tight.scope(|| limits::check_elements("a 100×100 map", &[100, 100])).is_err());
/// // Outside the scope the process-wide budget holds again.
/// assert!(limits::check_elements("a 100×100 map", &[100, 100]).is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Limits {
    /// The most elements one tensor may hold; `None` follows the process-wide budget.
    pub max_tensor_elements: Option<u64>,
}

impl Limits {
    /// Sets the tensor budget (at least 1) for calls under these limits.
    pub fn with_max_tensor_elements(mut self, elements: u64) -> Self {
        self.max_tensor_elements = Some(elements.max(1));
        self
    }

    /// Runs `f` with these limits in force on this thread (restored afterwards, also when `f`
    /// unwinds).
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<u64>);
        impl Drop for Restore {
            fn drop(&mut self) {
                SCOPED.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(SCOPED.with(Cell::get));
        if let Some(n) = self.max_tensor_elements {
            SCOPED.with(|c| c.set(Some(n)));
        }
        f()
    }
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
