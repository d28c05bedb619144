//! A million-entry feed compiles, fast; blocklists beyond the data-path maps are refused.
//!
//! Measured on the shared 2-core build machine: ~0.2 s in release, 2-5 s in debug. The asserted
//! budgets are loose (2 s release, 30 s debug) so a busy machine does not make the test flaky; they
//! catch order-of-magnitude regressions. See the time with
//! `cargo test --release -p gateway-policy --test scale -- --nocapture`.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[test]
fn million_entry_feed() {
    let dir = tempfile::tempdir().unwrap();
    // 1,000,000 entries: 990,000 distinct single addresses spread over 45.0.0.0 – 59.x, 5,000
    // duplicates of them, and 5,000 /24s of which some cover addresses above.
    let mut text = String::with_capacity(16 * 1_000_000);
    text.push_str("# synthetic feed\n");
    for i in 0..990_000u32 {
        let a = 0x2d00_0000u32 + i * 251;
        let _ = writeln!(
            text,
            "{}.{}.{}.{}",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        );
    }
    for i in 0..5_000u32 {
        let a = 0x2d00_0000u32 + i * 7 * 251;
        let _ = writeln!(
            text,
            "{}.{}.{}.{}",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        );
    }
    for i in 0..5_000u32 {
        let a = 0x3000_0000u32 + i * 0x1_0000;
        let _ = writeln!(
            text,
            "{}.{}.{}.0/24",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255
        );
    }
    std::fs::write(dir.path().join("big.txt"), &text).unwrap();
    let policy = format!(
        "{}\n[[feed]]\nname = \"big\"\npath = \"big.txt\"\nformat = \"plain\"\n",
        common::BASE
    );

    let start = Instant::now();
    let c = common::compile_in(dir.path(), &policy).unwrap();
    let took = start.elapsed();
    eprintln!("compiled 1,000,000 feed entries in {took:?}");

    assert_eq!(c.summary.feeds[1].read, 1_000_000);
    let img = &c.image;
    assert_eq!(img.block4_prefixes.len(), 5_000);
    // Distinct addresses not under one of the /24s (48.0.0.0 – 67.135.255.255, the .0 /24 of each /16).
    let under =
        |a: u32| (0x3000_0000..0x3000_0000 + 5_000 * 0x1_0000).contains(&a) && (a >> 8) & 255 == 0;
    let expected_exact = (0..990_000u32)
        .map(|i| 0x2d00_0000u32 + i * 251)
        .filter(|&a| !under(a))
        .count();
    assert!(
        expected_exact < 990_000,
        "some addresses lie under the /24s"
    );
    assert_eq!(
        img.block4_exact.len(),
        expected_exact + 1,
        "plus the policy's own 203.0.113.66"
    );
    assert_eq!(img.feeds[1].entries as usize, expected_exact + 5_000);
    let budget = if cfg!(debug_assertions) {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(2)
    };
    assert!(took < budget, "took {took:?}");
}

#[test]
fn blocklists_beyond_the_map_capacity_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = gateway_common::maps::BLOCK6_EXACT_PER_SLOT + 1;
    let mut text = String::with_capacity(n as usize * 24);
    for i in 0..n {
        let _ = writeln!(text, "2001:db8:77::{:x}:{:x}", i >> 16, i & 0xffff);
    }
    std::fs::write(dir.path().join("v6.txt"), &text).unwrap();
    let policy = format!(
        "{}\n[[feed]]\nname = \"v6\"\npath = \"v6.txt\"\nformat = \"plain\"\n",
        common::BASE
    );
    let e = common::compile_in(dir.path(), &policy).unwrap_err();
    let want = format!(
        "{}:34: feed.path: the policy needs {n} block6_exact entries; the data path holds {} per policy",
        dir.path().join("policy.toml").display(),
        n - 1
    );
    assert_eq!(e, want);
}

#[test]
fn policy_sections_beyond_the_map_capacity_are_refused() {
    let n = gateway_common::maps::SMALL_PER_SLOT + 1;
    let hosts: Vec<String> = (0..n)
        .map(|i| format!("\"10.10.{}.{}/32\"", i >> 8, i & 255))
        .collect();
    let policy = common::BASE
        .replace(
            "prefixes = [\"10.10.0.0/24\", \"fd00:10::/64\"]",
            "prefixes = [\"10.10.0.0/16\", \"fd00:10::/64\"]",
        )
        .replace(
            "hosts = [\"10.10.0.3/32\"]",
            &format!("hosts = [{}]", hosts.join(", ")),
        );
    let e = common::compile_text(&policy).unwrap_err();
    assert_eq!(
        e,
        format!(
            "p.toml:1: policy: the policy needs {n} isolated4 entries; the data path holds {} per policy",
            n - 1
        )
    );
}
