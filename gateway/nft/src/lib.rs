//! The gateway's nftables ruleset, rendered as a pure function of policy and profile and applied
//! in one transaction.
//!
//! - [`input`]: [`NftInput`], the plain data the ruleset is made from ([`NftInput::from_policy`]).
//! - [`render`](mod@render): [`render()`] (operational ruleset) and [`render_boot`] (default deny), both
//!   replacing table `inet gateway` atomically and leaving every other table alone.
//! - [`apply`](mod@apply): [`apply()`], [`check`], [`current`] (through `nft`, in the calling
//!   thread's network namespace) and [`to_json`] (for `nft -j -f FILE`, e.g. the image's boot file).
//!
//! nftables does what XDP does not: connection state, NAT and the management plane. The XDP program
//! has already dropped what the policy forbids (R1, R2, R4, R11) before the stack sees a packet; this
//! ruleset repeats R1 (never dedicated <-> internet) as a second line.

pub mod apply;
mod exprs;
pub mod input;
pub mod render;

pub use apply::{NftError, apply, check, current, to_json};
pub use exprs::{FAMILY, TABLE};
pub use input::{BootInput, LanServices, Management, NftInput, Port};
pub use render::{render, render_boot};

/// The `nftables` crate, whose schema types [`render()`] returns.
pub use nftables;
