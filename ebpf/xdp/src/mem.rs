//! Zeroing without `memset`. rustc lowers `[0; N]` and zero-initialised structs to `llvm.memset`,
//! and on BPF that becomes a call to compiler_builtins' byte-at-a-time loop in a subprogram of its
//! own: zeroing the 64 bytes of `bpf_fib_lookup`'s parameters that way cost more than the lookup's
//! map accesses, and even a 3-byte padding field became a call. Volatile word stores are never merged
//! into a `memset`, so [`zero`] stays a handful of store instructions. Zero in place, then set the
//! fields: building the value elsewhere and copying it back invites LLVM to turn the copy of a
//! known-zero region into a `memset` again.

use core::mem::{MaybeUninit, align_of, size_of};

/// Writes zeros over `*p`, 32 bits at a time, and returns it as initialised. `T` must be valid when
/// all-zero (plain integers and arrays of them), with a size that is a multiple of 4 and an
/// alignment of at least 4 (checked at compile time).
///
/// # Safety
/// All-zero bytes must be a valid `T`.
#[inline(always)]
pub unsafe fn zero<T>(p: &mut MaybeUninit<T>) -> &mut T {
    const {
        assert!(size_of::<T>() % 4 == 0 && align_of::<T>() >= 4);
    }
    let words = p.as_mut_ptr().cast::<u32>();
    for i in 0..size_of::<T>() / 4 {
        // SAFETY: `i` < size / 4, so the word lies inside `*p`, which is 4-aligned (asserted).
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: every byte was written (size is a multiple of 4); the caller vouches that zero is a
    // valid T.
    unsafe { p.assume_init_mut() }
}
