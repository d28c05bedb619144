//! Any bytes as a policy file for the lab box: the compiler never panics, and a refusal names a file
//! of the policy, a line inside it, a field and a message (tests/common/refusal.rs).
#![no_main]

#[path = "../../tests/common/refusal.rs"]
mod refusal;

use std::path::PathBuf;
use std::sync::OnceLock;

use gateway_policy::{Profile, compile_str, parse_profile};
use libfuzzer_sys::fuzz_target;

const LAB_PROFILE: &str = include_str!("../../../../hw/lab-veth.toml");

/// A directory for the policy (feeds it names resolve there; it holds none) and the lab profile.
fn setup() -> &'static (PathBuf, Profile) {
    static SETUP: OnceLock<(PathBuf, Profile)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gateway-policy-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let profile = parse_profile(LAB_PROFILE, &dir.join("lab-veth.toml")).expect("lab profile");
        (dir, profile)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // policies are read as UTF-8; a file that is not is refused before parsing
    };
    let (dir, profile) = setup();
    let path = dir.join("policy.toml");
    if let Err(e) = compile_str(text, &path, profile) {
        refusal::check_refusal(&e, dir, &path, text);
    }
});
