//! Helpers shared by the integration tests.
#![allow(dead_code)] // reason: each test binary uses a different subset
#![allow(clippy::unwrap_used)] // reason: test code

use std::path::{Path, PathBuf};

use gateway_policy::{Compiled, Profile, compile_str, load_profile};

/// The repository root (the workspace).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn lab_profile() -> Profile {
    load_profile(&repo().join("hw/lab-veth.toml")).unwrap()
}

/// A small valid policy for the lab profile, without feeds, that error tests mutate by text
/// replacement. Line numbers matter: tests assert them.
pub const BASE: &str = r#"[policy]
name = "t"
version = "1"

[zones.lan]
ports = ["lan0"]
prefixes = ["10.10.0.0/24", "fd00:10::/64"]

[zones.dedicated]
ports = ["ded0"]
prefixes = ["10.200.0.0/16", "fd00:200::/32"]

[zones.internet]
ports = ["inet0"]

[[shared_system]]
name = "db"
prefixes = ["10.200.1.10/32", "fd00:200:1::10/128"]

[[shared_system.allow]]
from = ["10.10.0.0/24", "fd00:10::/64"]
protocol = "tcp"
ports = [443, "8000-8080"]

[[isolated]]
name = "secret"
hosts = ["10.10.0.3/32"]

[blocklist]
prefixes = ["203.0.113.66/32"]
"#;

/// Compile policy text placed at `dir/policy.toml` (feeds resolve against `dir`).
pub fn compile_in(dir: &Path, text: &str) -> Result<Compiled, String> {
    compile_str(text, &dir.join("policy.toml"), &lab_profile()).map_err(|e| e.to_string())
}

/// Compile policy text with no feeds; errors as their display text.
pub fn compile_text(text: &str) -> Result<Compiled, String> {
    compile_str(text, Path::new("p.toml"), &lab_profile()).map_err(|e| e.to_string())
}

pub fn err(text: &str) -> String {
    match compile_text(text) {
        Ok(_) => panic!("policy was accepted:\n{text}"),
        Err(e) => e,
    }
}

/// Replace exactly one occurrence (guards the tests against editing nothing).
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}
