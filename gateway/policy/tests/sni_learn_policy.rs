//! `[domains] sni_ports` and `learn_ttl_max_secs` (issue 6 item 3): defaults, what reaches the
//! image (and its hash and diff), and refusals that name `file:line: field:`.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::path::Path;

use common::{BASE, compile_in, err};
use gateway_common::learn::{LEARN_TTL_MAX_DEFAULT, SNI_PORTS_DEFAULT};
use gateway_policy::diff;

/// A policy with one domain feed (the fixture list) and `extra` after it; `[[domain_feed]]` is
/// line 32, `extra` starts on line 36.
fn policy(extra: &str) -> String {
    format!(
        "{BASE}\n[[domain_feed]]\nname = \"d\"\npath = \"feeds/plain.list\"\nformat = \"list\"\n{extra}"
    )
}

fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/domains/plain.list");
    std::fs::copy(src, dir.path().join("feeds/plain.list")).unwrap();
    dir
}

#[test]
fn defaults_and_settings_reach_the_image() {
    let d = dir();
    let plain = compile_in(d.path(), &policy("")).unwrap().image;
    assert_eq!(plain.sni_ports, SNI_PORTS_DEFAULT);
    assert_eq!(plain.sni_ports, [443, 0, 0, 0]);
    assert_eq!(plain.learn_ttl_max_secs, LEARN_TTL_MAX_DEFAULT);

    let set = compile_in(
        d.path(),
        &policy("\n[domains]\nsni_ports = [443, 8443]\nlearn_ttl_max_secs = 60\n"),
    )
    .unwrap()
    .image;
    assert_eq!(set.sni_ports, [443, 8443, 0, 0]);
    assert_eq!(set.learn_ttl_max_secs, 60);
    assert_ne!(
        set.hash(),
        plain.hash(),
        "the settings are part of the image hash"
    );
    let shown = diff::diff(&plain, &set).to_string();
    assert!(
        shown.contains("sni ports 443,8443, learnt addresses ≤ 60 s"),
        "{shown}"
    );

    let off = compile_in(
        d.path(),
        &policy("\n[domains]\nsni_ports = []\nlearn_ttl_max_secs = 0\n"),
    )
    .unwrap()
    .image;
    assert_eq!(off.sni_ports, [0; 4]);
    assert_eq!(off.learn_ttl_max_secs, 0);
    let shown = diff::diff(&plain, &off).to_string();
    assert!(
        shown.contains("sni ports none, learnt addresses off"),
        "{shown}"
    );
}

#[test]
fn refusals_name_file_line_and_field() {
    // The blank line makes `[domains]` line 37 and its first key line 38.
    let cases = [
        (
            "sni_ports = [443, 8443, 9443, 10443, 11443]",
            "p.toml:38: domains.sni_ports: 5 ports; at most 4 can be inspected",
        ),
        (
            "sni_ports = [443, 0]",
            "p.toml:38: domains.sni_ports: port 0 is not in 1..=65535",
        ),
        (
            "sni_ports = [70000]",
            "p.toml:38: domains.sni_ports: port 70000 is not in 1..=65535",
        ),
        (
            "sni_ports = [443, 53]",
            "p.toml:38: domains.sni_ports: port 53 is DNS (its queries are judged as DNS); TLS is not read there",
        ),
        (
            "sni_ports = [443, 443]",
            "p.toml:38: domains.sni_ports: port 443 is listed twice",
        ),
        (
            "learn_ttl_max_secs = -1",
            "p.toml:38: domains.learn_ttl_max_secs: -1 is not in 0..=86400 (seconds; 0 turns learning off)",
        ),
        (
            "learn_ttl_max_secs = 86401",
            "p.toml:38: domains.learn_ttl_max_secs: 86401 is not in 0..=86400 (seconds; 0 turns learning off)",
        ),
        (
            "learn_ttl_max_secs = \"5m\"",
            "p.toml:38: domains.learn_ttl_max_secs: invalid type: string \"5m\", expected i64",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(
            err(&policy(&format!("\n[domains]\n{line}\n"))),
            want,
            "{line}"
        );
    }
}
