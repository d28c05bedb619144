//! Hostile input, generated: valid policies and feed files mutated line- and token-wise (deleted,
//! duplicated, swapped and truncated lines, flipped bytes, inserted TOML/CIDR/number fragments) must
//! never panic the compiler, and every refusal must name a file of the policy, a line inside that
//! file and a field — the contract admins rely on (`path:line: field: message`). Accepted mutants must
//! compile to the same image twice (no hidden state).
//!
//! This runs a few thousand cases in every CI run; `gateway/policy/fuzz/` holds the coverage-guided
//! libFuzzer targets for long runs with the same checks (`fuzz/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test code

mod common;
#[path = "common/refusal.rs"]
mod refusal;

use std::path::Path;

use gateway_policy::{FeedFormat, PolicyError, compile_str, parse_feed};
use proptest::prelude::*;
use refusal::check_refusal;

/// Fragments an editor slip or an attacker would insert.
const FRAGMENTS: &[&str] = &[
    "\"",
    "[",
    "]",
    "[[",
    "=",
    "\n",
    "#",
    ",",
    "{",
    "}",
    "'''",
    "\\u0000",
    "\u{0}",
    "é",
    "\u{202e}",
    "-1",
    "0",
    "65536",
    "4294967296",
    "99999999999999999999999",
    "1e400",
    "nan",
    "true",
    "0.0.0.0/0",
    "::/0",
    "10.10.0.0/33",
    "fd00::/129",
    "1.2.3.4.5",
    "10.10.0.256",
    "\"lan0\"",
    "\"inet0\"",
    "\"nope0\"",
    "[[feed]]",
    "[[shared_system]]",
    "[[shared_system.allow]]",
    "[zones.lan]",
    "[blocklist]",
    "[telemetry.flows]",
    "path = \"../../etc/passwd\"",
    "path = \"/etc/passwd\"",
    "format = \"json\"",
    "protocol = \"tcp\"",
    "ports = [0]",
    "ports = [\"9-1\"]",
    "prefixes = []",
    "from = [\"::/0\"]",
];

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, usize),
    ReplaceLine(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let n = FRAGMENTS.len();
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::FlipByte(p, b)),
        (any::<usize>(), 0..n).prop_map(|(p, f)| Mutation::Insert(p, f)),
        (any::<usize>(), 0..n).prop_map(|(l, f)| Mutation::ReplaceLine(l, f)),
    ]
}

/// Applies `m` to `text` (indexes taken modulo the text's size); the result may be invalid UTF-8,
/// which is replaced lossily as a file read would be refused earlier.
fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let nl = lines.len().max(1);
    match *m {
        Mutation::DeleteLine(i) => {
            if !lines.is_empty() {
                lines.remove(i % nl);
            }
        }
        Mutation::DuplicateLine(i) => {
            if !lines.is_empty() {
                let l = lines[i % nl].clone();
                lines.insert(i % nl, l);
            }
        }
        Mutation::SwapLines(a, b) => {
            if !lines.is_empty() {
                lines.swap(a % nl, b % nl);
            }
        }
        Mutation::ReplaceLine(i, f) => {
            if !lines.is_empty() {
                lines[i % nl] = FRAGMENTS[f].to_owned();
            }
        }
        Mutation::Truncate(at) => {
            let mut bytes = text.as_bytes().to_vec();
            bytes.truncate(at % (bytes.len() + 1));
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::FlipByte(at, b) => {
            let mut bytes = text.as_bytes().to_vec();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::Insert(at, f) => {
            let mut bytes = text.as_bytes().to_vec();
            let i = at % (bytes.len() + 1);
            bytes.splice(i..i, FRAGMENTS[f].bytes());
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    lines.join("\n") + "\n"
}

/// A policy with every section the compiler knows and small feeds of every format.
fn rich_policy(dir: &Path) -> String {
    let feeds = dir.join("feeds");
    std::fs::create_dir_all(&feeds).unwrap();
    let files = [
        ("a.netset", "# netset\n198.18.0.0/15\n192.0.2.1\n"),
        ("b.ipset", "203.0.113.7\n2001:db8:bad::1\n"),
        ("c.txt", "198.51.100.9 # comment\n\n198.51.100.10\n"),
        (
            "d.json",
            r#"[{"ip_address": "192.0.2.99", "port": 443}, {"ip_address": "2001:db8::99"}]"#,
        ),
    ];
    for (name, text) in files {
        std::fs::write(feeds.join(name), text).unwrap();
    }
    format!(
        r#"{base}
[[feed]]
name = "net"
path = "feeds/a.netset"
format = "netset"

[[feed]]
name = "ips"
path = "feeds/b.ipset"
format = "ipset"

[[feed]]
name = "plain"
path = "feeds/c.txt"
format = "plain"

[[feed]]
name = "json"
path = "feeds/d.json"
format = "json"

[defaults]
fragments = "inspect"

[telemetry.flows]
active_timeout_secs = 60
idle_timeout_secs = 15

[[telemetry.collector]]
name = "soc"
address = "172.16.0.2:4739"
format = "ipfix"
transport = "udp"

[telemetry.alerts]
burst = 20
window_ms = 1000
"#,
        base = common::BASE
    )
}

fn check_policy_mutant(dir: &Path, seed: &str, mutations: &[Mutation]) {
    let text = mutations.iter().fold(seed.to_owned(), |t, m| apply(&t, m));
    let path = dir.join("policy.toml");
    let profile = common::lab_profile();
    match compile_str(&text, &path, &profile) {
        Ok(first) => {
            let again = compile_str(&text, &path, &profile).expect("accepted once, refused twice");
            assert_eq!(
                first.image.hash(),
                again.image.hash(),
                "same text, different images"
            );
        }
        Err(e) => check_refusal(&e, dir, &path, &text),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_base_policy(mutations in prop::collection::vec(mutation(), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        check_policy_mutant(dir.path(), common::BASE, &mutations);
    }

    #[test]
    fn mutated_rich_policy(mutations in prop::collection::vec(mutation(), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        let seed = rich_policy(dir.path());
        check_policy_mutant(dir.path(), &seed, &mutations);
    }

    #[test]
    fn mutated_feed_files(
        which in 0usize..5,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let (format, seed) = [
            (FeedFormat::Netset, "# firehol\n198.18.0.0/15\n192.0.2.1\n10.0.0.0/8\n"),
            (FeedFormat::Ipset, "203.0.113.7\n2001:db8:bad::1\n"),
            (FeedFormat::Plain, "198.51.100.9 # comment\n\n198.51.100.10 3\n"),
            (FeedFormat::Spamhaus, "; Spamhaus DROP\n1.10.16.0/20 ; SBL256894\n"),
            (
                FeedFormat::Json,
                r#"[{"ip_address": "192.0.2.99", "port": 443}, {"ip_address": "2001:db8::99"}]"#,
            ),
        ][which];
        let text = mutations.iter().fold(seed.to_owned(), |t, m| apply(&t, m));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = parse_feed(&text, &path, format) {
            check_refusal(&e, dir.path(), &path, &text);
        }
    }
}

/// The checks themselves catch what they should: a line past the end or a foreign file fails.
#[test]
fn refusal_contract_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let e = compile_str(
        &common::BASE.replace("10.10.0.0/24\", \"fd00", "10.10.0.0/33\", \"fd00"),
        &dir.path().join("policy.toml"),
        &common::lab_profile(),
    )
    .unwrap_err();
    let policy = dir.path().join("policy.toml");
    check_refusal(&e, dir.path(), &policy, common::BASE);
    let outside = PolicyError::invalid(Path::new("/elsewhere.toml"), 1, "f", "m");
    assert!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_refusal(&outside, dir.path(), &policy, common::BASE)
        }))
        .is_err()
    );
    let past_end = PolicyError::invalid(&dir.path().join("policy.toml"), 9999, "f", "m");
    assert!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_refusal(&past_end, dir.path(), &policy, common::BASE)
        }))
        .is_err()
    );
}
