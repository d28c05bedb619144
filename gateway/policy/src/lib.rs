//! The policy layer: pure functions from the files handed to it to a [`image::MapImage`].
//!
//! - [`profile`]: hardware profiles (`hw/*.toml`): ports, roles, devices, XDP modes.
//! - [`policy`]: the policy file (TOML) and its validation against a profile.
//! - [`feeds`]: threat-intel feed parsers (plain, FireHOL netset/ipset, Spamhaus, JSON).
//! - [`prefixes`]: prefix-set algebra (de-duplication, carving of exceptions).
//! - [`remote`]: `[[feed]] url = "https://…"`: what the daemon's fetcher needs.
//! - [`compile`]: policy + feeds + profile → map image, warnings and a summary.
//! - [`telemetry`]: the `[telemetry]` section (collectors, alerts, metrics endpoint).
//! - [`management`]: the `[management]` section (who reaches the API, metrics, SSH).
//! - [`diff`]: what changes between two images.
//! - [`image`]: the map image itself (plain data, what one generation slot of the maps holds).
//!
//! No aya, no async, no I/O beyond reading the policy, the feeds it names and the profile. Every
//! refusal is a [`PolicyError`] that names `file:line: field: message`.

pub mod compile;
pub mod diff;
pub mod domains;
pub mod error;
pub mod feeds;
pub mod image;
pub mod management;
pub mod policy;
pub mod prefixes;
pub mod profile;
pub mod remote;
pub mod telemetry;

pub use compile::{
    Compiled, FeedSummary, Summary, compile, compile_policy, compile_policy_with_store,
    compile_str, compile_with_store,
};
pub use diff::{ImageDiff, SectionDiff, diff};
pub use error::{ErrorKind, PolicyError, Warning};
pub use feeds::{FeedEntries, FeedFormat, load_feed, parse_feed};
pub use image::MapImage;
pub use policy::{Policy, load_policy, parse_policy};
pub use profile::{Arch, DeviceMatch, PortSpec, Profile, XdpMode, load_profile, parse_profile};
