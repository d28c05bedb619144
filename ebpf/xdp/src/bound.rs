//! Indices into the per-CPU scratch buffers, masked so every verifier can bound them.
//!
//! The parsers write `buf[i & MASK]`. LLVM deletes such a mask when it can prove it redundant from
//! an earlier comparison between two variables (`p + 2 <= copy` with `copy <= BUF`). The verifier
//! of kernel 6.1 (the firmware image's) does not narrow a register from a comparison with another
//! register, so without the mask it sees an index of up to BUF + 255 and refuses the load; 6.8 and
//! later track it, which is how this passed on the development kernel. [`opaque`] hides the value
//! from LLVM, so the mask that follows stays in the program.

/// `v`, unknown to the optimiser (one register move, which the verifier follows exactly).
#[inline(always)]
pub fn opaque(mut v: usize) -> usize {
    // SAFETY: a move of a register onto itself: no memory, no stack, no flags.
    unsafe {
        core::arch::asm!("{0} = {0}", inout(reg) v, options(pure, nomem, nostack, preserves_flags));
    }
    v
}

/// `i & mask`, with the mask kept (see the module docs).
#[inline(always)]
pub fn masked(i: usize, mask: usize) -> usize {
    opaque(i) & mask
}
