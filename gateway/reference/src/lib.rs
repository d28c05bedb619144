//! The executable specification of the data path (`briefs/datapath-spec.md`).
//!
//! [`evaluate`] takes what the XDP program sees — the ingress ifindex, the raw Ethernet frame, the port
//! map, the map image of the active generation slot and a route oracle — and returns the one
//! [`Reason`] the program must produce. It is written to be obviously correct, not fast: frames are
//! parsed with `smoltcp::wire` plus the spec's own checks ([`parse`]), and longest-prefix matches
//! probe the image's maps once per prefix length ([`lookup`]).
//!
//! The packet tests run the same (image, frame) pairs through this model and through the real program
//! with `BPF_PROG_TEST_RUN` and demand equal reasons.

pub mod beyond;
pub mod dns;
pub mod lookup;
pub mod parse;
pub mod routes;
mod verdict;

pub use beyond::{LearntSet, evaluate_beyond};
pub use gateway_common::{Reason, Role, Verdict};
pub use parse::{Packet, Parsed, l4_payload, parse};
pub use routes::{Egress, Ports, Routes, StaticRoutes};
pub use verdict::{evaluate, stats_index};

#[cfg(test)]
mod testutil;
