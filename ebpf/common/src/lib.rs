//! The contract between the XDP program and userspace.
//!
//! Everything here is `#![no_std]`, `#[repr(C)]`, `Copy`, with every padding byte an explicit field and
//! a size assert, so the kernel and userspace agree on layouts byte for byte. Addresses are kept as the
//! raw bytes of the wire (network order); port ranges in policy values are host order because both
//! sides compare them after converting the packet's port.
//!
//! # Atomic policy swap (generation tag)
//! Every policy-map key starts with a one-byte *generation slot* (0 or 1). Userspace writes a new policy
//! into the slot that is not in force, then flips [`maps::ACTIVE`] (one aligned `u32` store). The program
//! reads the active slot once per packet, so every packet is judged by exactly one policy.
#![no_std]

// Userspace helpers (names decoded into `String`s) need std; the kernel side never sees them.
#[cfg(feature = "user")]
extern crate std;

pub mod dname;
pub mod event;
pub mod flow;
pub mod keys;
pub mod learn;
pub mod maps;
pub mod reason;
pub mod role;
pub mod values;

pub use reason::{Reason, Verdict};
pub use role::Role;
