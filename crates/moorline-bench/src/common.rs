//! What the benchmarks and their children share: the role variable, the error type and the
//! counting allocator (below `lib.rs`, `echo` and `idle`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The environment variable that makes the executable a benchmark child (see [`child_main`](crate::child_main)).
pub const ROLE_ENV: &str = "MOORLINE_BENCH_ROLE";
/// The echo child's options, as JSON.
pub(crate) const OPTIONS_ENV: &str = "MOORLINE_BENCH_OPTIONS";

/// What can go wrong running a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A child process could not be started.
    #[error("could not start {what}: {source}")]
    Spawn {
        /// Which process.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A child process failed or said something unreadable.
    #[error("{what} failed: {detail}")]
    Child {
        /// Which process.
        what: String,
        /// Its last words (stderr's last line, or what was wrong with its output).
        detail: String,
    },
    /// A client name that is not measured here.
    #[error("no client named `{name}` (known: {known})")]
    UnknownClient {
        /// The name given.
        name: String,
        /// The names known.
        known: String,
    },
}

/// Live heap bytes counted by [`Counting`].
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// A global allocator that forwards to the system allocator and counts live heap bytes (the
/// idle benchmark's heap figure). Use it in the executable that runs the benchmarks:
///
/// ```ignore
/// #[global_allocator]
/// static HEAP: moorline_bench::Counting = moorline_bench::Counting;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Live heap bytes of this process, as [`Counting`] counts them (0 if it is not the global
/// allocator).
pub fn live_heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The median of `v` (the upper one of an even count; NaN when empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// A ratio as the tables show it (`1.02x`; `-` when there is none).
pub(crate) fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"))
}
