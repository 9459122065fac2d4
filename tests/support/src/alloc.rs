//! A counting global allocator for the tests that prove a path allocates nothing (or little): it
//! forwards every call to the system allocator unchanged and counts allocations (reallocations
//! included) of the whole process and of the calling thread, and live and peak heap bytes.
//!
//! A test binary installs it with
//! `#[global_allocator] static A: support::alloc::Counting = support::alloc::Counting;`
//! and reads the counters before and after what it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// The counting allocator (see the module documentation).
pub struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_ALLOCS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one allocation, and `size` more live bytes.
fn count(size: usize) {
    ALLOCS.fetch_add(1, SeqCst);
    // `try_with`: a thread being torn down still allocates, and is not counted.
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
    let now = LIVE.fetch_add(size, SeqCst) + size;
    PEAK.fetch_max(now, SeqCst);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the wrapper only counts,
// without allocating (the thread-local is a const-initialised Cell).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), SeqCst);
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new);
        LIVE.fetch_sub(l.size(), SeqCst);
        // SAFETY: `p` came from `System` with layout `l`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(p, l, new) }
    }
}

/// Allocations (and reallocations) so far, by every thread of the process.
pub fn allocations() -> usize {
    ALLOCS.load(SeqCst)
}

/// Allocations (and reallocations) so far by the calling thread.
pub fn thread_allocations() -> usize {
    THREAD_ALLOCS.with(Cell::get)
}

/// Heap bytes allocated and not yet freed.
pub fn live_bytes() -> usize {
    LIVE.load(SeqCst)
}

/// The most heap bytes live at once since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(SeqCst)
}

/// Starts a new peak at the bytes live now, and returns them.
pub fn reset_peak() -> usize {
    let base = LIVE.load(SeqCst);
    PEAK.store(base, SeqCst);
    base
}
