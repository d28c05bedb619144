//! `[[feed]] url = "https://…"`: validation (errors name file, line, field) and compilation from
//! the daemon's store of last good copies.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::path::Path;

use common::{BASE, lab_profile};
use gateway_policy::{compile_with_store, load_policy};

/// BASE plus one feed table (`body` without the `[[feed]]` header), written to `dir/policy.toml`.
fn write_policy(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, format!("{BASE}\n[[feed]]\n{body}")).unwrap();
    path
}

/// Line of the first line of `body` in the file written by [`write_policy`].
fn body_line() -> usize {
    BASE.lines().count() + 3
}

fn refused(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_policy(dir.path(), body);
    let e = load_policy(&path, &lab_profile()).expect_err("refused");
    e.to_string()
        .strip_prefix(&format!("{}:", path.display()))
        .unwrap()
        .to_owned()
}

#[test]
fn remote_feed_settings_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
    let path = write_policy(
        dir.path(),
        "name = \"soc\"\nurl = \"https://feeds.soc.example:8443/v1/ioc.json\"\nformat = \"json\"\n\
         refresh_secs = 600\nmax_bytes = 1048576\nca = \"ca.pem\"\nmin_entries = 10\ntimeout_secs = 5\n\
         [[feed]]\nname = \"drop\"\nurl = \"https://www.spamhaus.example/drop.txt\"\nformat = \"spamhaus\"\n",
    );
    let (policy, _) = load_policy(&path, &lab_profile()).unwrap();
    let soc = policy.feeds[0].remote.as_ref().unwrap();
    assert_eq!(soc.url.host, "feeds.soc.example");
    assert_eq!(soc.url.port, 8443);
    assert_eq!(soc.url.path, "/v1/ioc.json");
    assert_eq!(soc.refresh.as_secs(), 600);
    assert_eq!(soc.max_bytes, 1 << 20);
    assert_eq!(soc.ca.as_deref(), Some(dir.path().join("ca.pem").as_path()));
    assert_eq!(soc.min_entries, 10);
    assert_eq!(soc.timeout.as_secs(), 5);
    assert_eq!(policy.feeds[0].line as usize, body_line() + 1);
    let drop = policy.feeds[1].remote.as_ref().unwrap();
    assert_eq!(drop.refresh.as_secs(), 3600);
    assert_eq!(drop.max_bytes, 64 << 20);
    assert_eq!(drop.ca, None);
    assert_eq!(drop.min_entries, 1);
    assert_eq!(drop.timeout.as_secs(), 60);
    assert_eq!(drop.file_name(), "drop.spamhaus");
}

#[test]
fn bad_remote_feeds_name_line_and_field() {
    let l = body_line();
    for (body, expected) in [
        (
            "name = \"a\"\nurl = \"http://x.example/a\"\nformat = \"plain\"\n",
            format!(
                "{}: feed.url: \"http://x.example/a\": scheme \"http\" refused; only https feeds are fetched",
                l + 1
            ),
        ),
        (
            "name = \"a\"\nurl = \"https://x.example/a\"\npath = \"a.txt\"\nformat = \"plain\"\n",
            format!(
                "{}: feed.path: a feed has either `path` (a file beside the policy) or `url` (fetched over HTTPS), not both",
                l + 2
            ),
        ),
        (
            "name = \"a\"\nformat = \"plain\"\n",
            format!(
                "{l}: feed.path: feed \"a\" needs `path` (a file beside the policy) or `url` (https://…)"
            ),
        ),
        (
            "name = \"a\"\nurl = \"https://x.example/a\"\nformat = \"plain\"\nrefresh_secs = 59\n",
            format!(
                "{}: feed.refresh_secs: 59 is out of range; expected 60 to 604800",
                l + 3
            ),
        ),
        (
            "name = \"a\"\nurl = \"https://x.example/a\"\nformat = \"plain\"\nmax_bytes = 134217729\n",
            format!(
                "{}: feed.max_bytes: 134217729 is out of range; expected 1 to 134217728",
                l + 3
            ),
        ),
        (
            "name = \"a\"\nurl = \"https://x.example/a\"\nformat = \"plain\"\nmin_entries = 0\n",
            format!(
                "{}: feed.min_entries: 0 is out of range; expected 1 to 4294967295",
                l + 3
            ),
        ),
        (
            "name = \"a\"\nurl = \"https://x.example/a\"\nformat = \"plain\"\nca = \"../ca.pem\"\n",
            format!(
                "{}: feed.ca: \"../ca.pem\" must be a relative path inside the policy's directory (no \"..\", not absolute)",
                l + 3
            ),
        ),
        (
            "name = \"a\"\npath = \"a.txt\"\nformat = \"plain\"\nrefresh_secs = 600\n",
            format!(
                "{}: feed.refresh_secs: only a remote feed (`url = \"https://…\"`) takes this setting",
                l + 3
            ),
        ),
    ] {
        assert_eq!(refused(body), format!("{expected}"), "{body}");
    }
    let e = refused(
        "name = \"a\"\nurl = \"https://x.example/a\"\nformat = \"plain\"\nca = \"none.pem\"\n",
    );
    assert!(
        e.starts_with(&format!("{}: feed.ca: ", l + 3))
            && e.ends_with("none.pem is not a readable file"),
        "{e}"
    );
}

#[test]
fn a_remote_feed_compiles_from_its_last_good_copy_or_contributes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let path = write_policy(
        dir.path(),
        "name = \"remote\"\nurl = \"https://feeds.example/list\"\nformat = \"plain\"\n",
    );
    let profile = lab_profile();

    // No store, then an empty store: the feed contributes nothing, with a warning; the rest applies.
    for s in [None, Some(store.path())] {
        let c = compile_with_store(&path, &profile, s).unwrap();
        assert_eq!(c.summary.feeds[1].entries, 0);
        assert_eq!(c.summary.feeds[1].path, None);
        assert_eq!(
            c.summary.feeds[1].url.as_deref(),
            Some("https://feeds.example/list")
        );
        assert!(
            c.image
                .block4_exact
                .contains_key(&"203.0.113.66".parse().unwrap())
        );
        let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert!(
            w.iter().any(|w| w.contains("feed.url: feed \"remote\" has no good copy yet: it blocks nothing until a download from https://feeds.example/list succeeds")),
            "{w:?}"
        );
    }

    std::fs::write(
        store.path().join("remote.plain"),
        "198.51.100.7\n198.51.100.64/30\n192.0.2.9\n",
    )
    .unwrap();
    let c = compile_with_store(&path, &profile, Some(store.path())).unwrap();
    assert_eq!(c.summary.feeds[1].read, 3);
    assert_eq!(c.summary.feeds[1].entries, 3);
    assert!(
        c.image
            .block4_exact
            .contains_key(&"192.0.2.9".parse().unwrap())
    );

    // A copy that no longer parses is refused with its own file and line (never half-read).
    std::fs::write(store.path().join("remote.plain"), "198.51.100.7\nbogus\n").unwrap();
    let e = compile_with_store(&path, &profile, Some(store.path())).expect_err("bad copy");
    assert!(
        e.to_string()
            .ends_with("remote.plain:2: entry: \"bogus\" is not an IP address or CIDR"),
        "{e}"
    );
}
