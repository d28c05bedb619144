//! Atomic access to map values shared between CPUs (flow entries, rate-limit state).
//!
//! The `bpfel-unknown-none` target declares no atomic compare-and-swap, so `core::sync::atomic`
//! offers no read-modify-write there. The BPF instruction set has locked add and or, and LLVM emits
//! them for `atomicrmw`, which the compiler's atomic intrinsics produce (the way aya's maintainers
//! recommend). The nested eBPF build already runs with RUSTC_BOOTSTRAP (for `-Z build-std`), so the
//! intrinsics are usable; their signatures follow the toolchain pinned in rust-toolchain.toml and are
//! wrapped here, in one place, so a toolchain bump touches only this file.
//!
//! bpf-linker generates code for cpu `generic` (v1), which has 64-bit locked add and or whose result
//! is not used, and nothing else: no 32-bit or, no fetch, no exchange. Only those two are offered.
//! Both are relaxed: these are counters, not locks.

use core::intrinsics::{self, AtomicOrdering::Relaxed};

/// `*p += v`, atomically.
///
/// # Safety
/// `p` points at a live, 8-byte aligned `u64` in a map value.
#[inline(always)]
pub unsafe fn add(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { intrinsics::atomic_xadd::<u64, u64, { Relaxed }>(p, v) };
}

/// `*p |= v`, atomically.
///
/// # Safety
/// `p` points at a live, 8-byte aligned `u64` in a map value.
#[inline(always)]
pub unsafe fn or(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { intrinsics::atomic_or::<u64, u64, { Relaxed }>(p, v) };
}

/// A load of a field other CPUs may be writing: one aligned load instruction, never torn, never
/// merged with another access (the kernel's `READ_ONCE`). LLVM cannot select `load atomic` for the
/// cpu bpf-linker targets, so this is a volatile read.
///
/// # Safety
/// `p` points at a live, naturally aligned `T` of at most 8 bytes in a map value.
#[inline(always)]
pub unsafe fn load<T: Copy>(p: *const T) -> T {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::read_volatile(p) }
}

/// A store to a field other CPUs may be writing (the kernel's `WRITE_ONCE`); see [`load`].
///
/// # Safety
/// `p` points at a live, naturally aligned `T` of at most 8 bytes in a map value.
#[inline(always)]
pub unsafe fn store<T: Copy>(p: *mut T, v: T) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::write_volatile(p, v) }
}
