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
//! **Memory per call.** Each call of an explainer (`explain`, `forward`, `check_trace`, the
//! gradient methods) also keeps an account of the bytes it holds: every recorded activation,
//! then, before the backward walk starts, the relevance it will carry (as much as the
//! activations) and the signed weights `[W⁺, |W⁻|]` of the linear ops (twice their weights).
//! Every allocation is checked against the bound *before* it is made (a layer checks its output
//! before computing it), so a call over the bound is refused with [`AttribError::MemoryBudget`]
//! naming what would not fit, never an abort. The default bound is three quarters of the memory
//! the machine has available when first asked (`MemAvailable` in `/proc/meminfo`; 16 GiB where
//! that cannot be read); [`set_max_call_bytes`] sets it for the process and
//! [`Limits::with_max_call_bytes`] for one explainer. The bytes are those of the call's tensors,
//! on whatever device they live.
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

/// The process-wide bound on one call's bytes; 0 means the default ([`default_max_call_bytes`]).
static MAX_CALL_BYTES: AtomicU64 = AtomicU64::new(0);

/// The default bound when the machine's available memory cannot be read: 16 GiB.
pub const FALLBACK_MAX_CALL_BYTES: u64 = 16 << 30;

/// Bytes per element of the engine's tensors where the call has not said (`f32`).
const BYTES_PER_ELEMENT: u64 = 4;

thread_local! {
    /// The budget of the [`Limits::scope`] running on this thread, if any.
    static SCOPED: Cell<Option<u64>> = const { Cell::new(None) };
    /// The memory account of the call running on this thread: (bytes held, bound).
    static CALL: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
    /// Bytes per element of the running call's tensors (8 on the float64 path).
    static ELEMENT_BYTES: Cell<u64> = const { Cell::new(BYTES_PER_ELEMENT) };
}

/// Sets the bytes per element of the running call's tensors (its input's float type: 4 for
/// `f32`, 8 for `f64`); reset when the call's [`Limits::scope`] ends.
pub(crate) fn set_element_bytes(bytes: u64) {
    ELEMENT_BYTES.with(|c| c.set(bytes.max(1)));
}

/// The default bound on one call's bytes: three quarters of `MemAvailable` in `/proc/meminfo`,
/// read once, or [`FALLBACK_MAX_CALL_BYTES`] where that cannot be read.
pub fn default_max_call_bytes() -> u64 {
    static DEFAULT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *DEFAULT.get_or_init(|| {
        let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        });
        available.map_or(FALLBACK_MAX_CALL_BYTES, |b| (b / 4).saturating_mul(3).max(1 << 20))
    })
}

/// The process-wide bound on one call's bytes ([`set_max_call_bytes`], else the default).
pub fn max_call_bytes() -> u64 {
    match MAX_CALL_BYTES.load(Ordering::Relaxed) {
        0 => default_max_call_bytes(),
        n => n,
    }
}

/// Sets the bound on one call's bytes for the whole process (at least 1); explainers with their
/// own [`Limits::with_max_call_bytes`] keep theirs.
pub fn set_max_call_bytes(bytes: u64) {
    MAX_CALL_BYTES.store(bytes.max(1), Ordering::Relaxed);
}

/// The bytes the call running on this thread holds so far by its account, if a call is running.
pub fn call_bytes() -> Option<u64> {
    CALL.with(Cell::get).map(|(used, _)| used)
}

fn budget_error(what: &str, bytes: u64, limit: u64) -> AttribError {
    AttribError::MemoryBudget { what: what.to_string(), bytes, limit }
}

/// Checks that `elements` more `f32` would fit in the running call's bound (nothing is
/// recorded); outside a call, nothing to check. `what` names the allocation in the error.
pub(crate) fn check_more(what: impl FnOnce() -> String, elements: u64) -> Result<()> {
    with_more(what, elements).map(|_| ())
}

/// The running call's account with `elements` more `f32` (bytes, bound), checked against the
/// bound; `None` outside a call.
fn with_more(what: impl FnOnce() -> String, elements: u64) -> Result<Option<(u64, u64)>> {
    match CALL.with(Cell::get) {
        Some((used, limit)) => {
            let total = used.saturating_add(elements.saturating_mul(ELEMENT_BYTES.with(Cell::get)));
            if total > limit { Err(budget_error(&what(), total, limit)) } else { Ok(Some((total, limit))) }
        }
        None => Ok(None),
    }
}

/// The number of elements of a tensor of shape `dims` (saturating).
pub(crate) fn count(dims: &[usize]) -> u64 {
    dims.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

/// Records `elements` more `f32` held by the running call, or the error when they do not fit.
pub(crate) fn reserve(what: impl FnOnce() -> String, elements: u64) -> Result<()> {
    if let Some(account) = with_more(what, elements)? {
        CALL.with(|c| c.set(Some(account)));
    }
    Ok(())
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
    /// The most bytes one call may hold (see the module docs); `None` follows the process-wide
    /// bound ([`max_call_bytes`]).
    pub max_call_bytes: Option<u64>,
}

impl Limits {
    /// Sets the tensor budget (at least 1) for calls under these limits.
    pub fn with_max_tensor_elements(mut self, elements: u64) -> Self {
        self.max_tensor_elements = Some(elements.max(1));
        self
    }

    /// Sets the bound on the bytes one call holds (at least 1) for calls under these limits.
    pub fn with_max_call_bytes(mut self, bytes: u64) -> Self {
        self.max_call_bytes = Some(bytes.max(1));
        self
    }

    /// Runs `f` as one call under these limits on this thread: the tensor budget and a fresh
    /// memory account (both restored afterwards, also when `f` unwinds).
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<u64>, Option<(u64, u64)>, u64);
        impl Drop for Restore {
            fn drop(&mut self) {
                SCOPED.with(|c| c.set(self.0));
                CALL.with(|c| c.set(self.1));
                ELEMENT_BYTES.with(|c| c.set(self.2));
            }
        }
        let _restore = Restore(SCOPED.with(Cell::get), CALL.with(Cell::get), ELEMENT_BYTES.with(Cell::get));
        if let Some(n) = self.max_tensor_elements {
            SCOPED.with(|c| c.set(Some(n)));
        }
        let bound = self.max_call_bytes.unwrap_or_else(max_call_bytes);
        CALL.with(|c| c.set(Some((0, bound))));
        f()
    }
}

/// The largest file the crate reads whole where no tighter cap applies (weights, masks, JSON):
/// 16 GiB.
pub const MAX_FILE_BYTES: u64 = 16 << 30;

/// Checks that `path` is a regular file of at most `max` bytes (for a reader that opens the
/// file itself): a device, a pipe or a directory is refused.
pub fn check_file(path: &std::path::Path, max: u64) -> Result<()> {
    let shown = path.display().to_string();
    let meta = std::fs::File::open(path).and_then(|f| f.metadata()).map_err(|e| AttribError::io(shown.clone(), e))?;
    if !meta.is_file() {
        return Err(AttribError::io_message(
            shown,
            "not a regular file (a directory, a device or a pipe); expected a file",
        ));
    }
    if meta.len() > max {
        return Err(AttribError::io_message(shown, format!("{} bytes; at most {max} bytes are read", meta.len())));
    }
    Ok(())
}

/// Reads the regular file at `path`, at most `max` bytes, without trusting its metadata: a
/// device, a pipe or a directory is refused ([`AttribError::Io`] naming the path), and a file
/// that grows past `max` while it is read is refused when it does, not read to the end.
pub fn read_file(path: &std::path::Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| AttribError::io(shown.clone(), e))?;
    let meta = file.metadata().map_err(|e| AttribError::io(shown.clone(), e))?;
    if !meta.is_file() {
        return Err(AttribError::io_message(
            shown,
            "not a regular file (a directory, a device or a pipe); expected a file",
        ));
    }
    if meta.len() > max {
        return Err(AttribError::io_message(shown, format!("{} bytes; at most {max} bytes are read", meta.len())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| AttribError::io(shown.clone(), e))?;
    if bytes.len() as u64 > max {
        return Err(AttribError::io_message(shown, format!("more than {max} bytes; at most {max} bytes are read")));
    }
    Ok(bytes)
}

/// Sets the budget for the whole process (at least 1).
pub fn set_max_tensor_elements(elements: u64) {
    MAX_TENSOR_ELEMENTS.store(elements.max(1), Ordering::Relaxed);
}

/// The number of elements of a tensor of shape `dims`, or [`AttribError::TooLarge`] naming
/// `what` when the product overflows or exceeds the budget ([`AttribError::MemoryBudget`] when,
/// within an explainer's call, the tensor would not fit the call's memory bound).
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
    // Within an explainer's call, the new tensor must also fit its memory bound.
    check_more(|| format!("{what} (shape {dims:?})"), n as u64)?;
    Ok(n as usize)
}
