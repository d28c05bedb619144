//! `[[domain_feed]]` and `[domains]` in the policy (issue 6): refusals name `file:line: field:`, and
//! the fixture feeds compile into the `domains` section the data path looks names up in.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::path::Path;

use common::{BASE, compile_in, edit, err};
use gateway_common::dname::{self, Say};
use gateway_common::values::{
    SETTING_DNS_INSPECT, SETTING_DNS_MALFORMED_PASS, SETTING_DNS_NXDOMAIN, SETTING_DNS_SINKHOLE_V4,
};
use gateway_policy::image::Sinkhole;
use gateway_policy::{MapImage, diff};

/// Feeds of `tests/fixtures/domains` copied beside a policy in a fresh directory.
fn dir_with_feeds(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/domains");
    for n in names {
        std::fs::copy(src.join(n), dir.path().join("feeds").join(n)).unwrap();
    }
    dir
}

const FEEDS: &str = r#"
[[domain_feed]]
name = "soc-rpz"
path = "feeds/threat.rpz"
format = "rpz"

[[domain_feed]]
name = "adblock"
path = "feeds/adblock.txt"
format = "list"

[[domain_feed]]
name = "soc-list"
path = "feeds/plain.list"
format = "list"
exact_only = true

[[domain_feed]]
name = "ransomware"
path = "feeds/ransomware.txt"
format = "hosts"
"#;

const FIXTURES: [&str; 4] = ["threat.rpz", "adblock.txt", "plain.list", "ransomware.txt"];

/// What the data path decides for a query name, evaluated on the image alone (suffix hashes from the
/// top-level domain down, one lookup each, the last node with something to say wins): `Some(feed)`
/// for a block, `None` for a pass or no entry.
fn blocked_by(img: &MapImage, name: &str) -> Option<String> {
    let mut decided = None;
    for s in dname::dotted_suffixes(img.domain_seed, name.as_bytes()) {
        let Some(v) = img.domains.get(&s.hash) else {
            continue;
        };
        match dname::node_say(v.flags, s.is_whole()) {
            Say::Nothing => {}
            Say::Block => decided = Some(img.domain_feeds[v.feed as usize].name.clone()),
            Say::Pass => decided = None,
        }
    }
    decided
}

#[test]
fn fixture_feeds_compile_into_the_domains_section() {
    let dir = dir_with_feeds(&FIXTURES);
    let c = compile_in(dir.path(), &format!("{BASE}{FEEDS}")).unwrap();
    let img = &c.image;

    assert_eq!(img.domain_seed, 0);
    assert_eq!(
        img.settings_flags,
        SETTING_DNS_INSPECT | SETTING_DNS_NXDOMAIN,
        "domain feeds switch inspection on; nxdomain is the default action"
    );
    let names: Vec<&str> = img.domain_feeds.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["soc-rpz", "adblock", "soc-list", "ransomware"]);

    // RPZ: the name is exact, `*.name` covers names below it only; passthru is an exception.
    assert_eq!(
        blocked_by(img, "evil-c2.example").as_deref(),
        Some("soc-rpz")
    );
    assert_eq!(
        blocked_by(img, "a.b.EVIL-c2.example.").as_deref(),
        Some("soc-rpz")
    );
    assert_eq!(
        blocked_by(img, "dropme.example").as_deref(),
        Some("soc-rpz")
    );
    assert_eq!(
        blocked_by(img, "www.dropme.example"),
        None,
        "RPZ names are exact"
    );
    assert_eq!(
        blocked_by(img, "shady-cdn.example"),
        None,
        "a wildcard skips the apex"
    );
    assert_eq!(
        blocked_by(img, "x.shady-cdn.example").as_deref(),
        Some("soc-rpz")
    );
    assert_eq!(
        blocked_by(img, "good.shady-cdn.example"),
        None,
        "rpz-passthru"
    );
    assert_eq!(
        blocked_by(img, "tcp-only.example"),
        None,
        "rpz-tcp-only is skipped"
    );
    // Adblock: `||name^` is a subtree, `@@||name^` an exception under it.
    assert_eq!(
        blocked_by(img, "ads.example.com").as_deref(),
        Some("adblock")
    );
    assert_eq!(
        blocked_by(img, "x.ads.example.com").as_deref(),
        Some("adblock")
    );
    assert_eq!(blocked_by(img, "cdn.ads.example.com"), None);
    assert_eq!(blocked_by(img, "img.cdn.ads.example.com"), None);
    // exact_only: a bare name blocks only itself; `*.`/`.` still mean the subtree.
    assert_eq!(
        blocked_by(img, "phish-login.example.com").as_deref(),
        Some("soc-list")
    );
    assert_eq!(blocked_by(img, "www.phish-login.example.com"), None);
    assert_eq!(
        blocked_by(img, "a.malvertising.example").as_deref(),
        Some("soc-list")
    );
    assert_eq!(
        blocked_by(img, "deep.c2.example.net").as_deref(),
        Some("soc-list")
    );
    assert_eq!(
        blocked_by(img, "mixed-case.example.org").as_deref(),
        Some("soc-list")
    );
    assert_eq!(
        blocked_by(img, "xn--company-ww8c.example"),
        None,
        "not a listed name"
    );
    // Names not listed anywhere.
    assert_eq!(blocked_by(img, "example.com"), None);
    assert_eq!(blocked_by(img, "www.gov.example"), None);

    // The summary: one row per domain feed and the `domains` section.
    let text = c.summary.to_string();
    assert!(text.contains("domain feeds:"), "{text}");
    for n in names {
        assert!(text.contains(n), "{n} missing from\n{text}");
    }
    assert!(text.contains("feeds/plain.list (exact only)"), "{text}");
    let domains = c
        .summary
        .sections
        .iter()
        .find(|(s, _)| *s == "domains")
        .unwrap();
    assert_eq!(domains.1, img.domains.len());
    let kept: u64 = c
        .summary
        .domain_feeds
        .iter()
        .map(|d| d.counts.blocks + d.counts.exceptions)
        .sum();
    assert_eq!(kept as usize, img.domains.len(), "{text}");
    let rpz = &c.summary.domain_feeds[0];
    assert!(
        rpz.counts.unsupported >= 3,
        "rpz-ip, rpz-nsdname, rpz-tcp-only: {rpz:?}"
    );
    assert!(rpz.counts.exceptions >= 1, "{rpz:?}");
}

#[test]
fn compile_is_deterministic_and_the_diff_names_feeds() {
    let dir = dir_with_feeds(&FIXTURES);
    let a = compile_in(dir.path(), &format!("{BASE}{FEEDS}")).unwrap();
    let b = compile_in(dir.path(), &format!("{BASE}{FEEDS}")).unwrap();
    assert_eq!(a.image, b.image);
    assert_eq!(a.image.hash(), b.image.hash());

    // Dropping the adblock feed: its names leave, the other feeds renumber (not a change), and the
    // settings do not move.
    let without = edit(
        FEEDS,
        "[[domain_feed]]\nname = \"adblock\"\npath = \"feeds/adblock.txt\"\nformat = \"list\"\n",
        "",
    );
    let c = compile_in(dir.path(), &format!("{BASE}{without}")).unwrap();
    let d = diff(&a.image, &c.image);
    let feeds = d.section("domain_feeds").unwrap();
    assert_eq!(
        (feeds.added, feeds.removed, feeds.changed),
        (0, 1, 0),
        "{d}"
    );
    let domains = d.section("domains").unwrap();
    assert_eq!(domains.added, 0, "{d}");
    assert!(domains.removed >= 3, "{d}");
    assert!(d.section("settings").unwrap().is_empty(), "{d}");
    assert!(d.to_string().contains("(feed adblock)"), "{d}");
    assert_ne!(a.image.hash(), c.image.hash());

    // The action is a setting.
    let dropping = format!("{BASE}{FEEDS}\n[domains]\naction = \"drop\"\nmalformed = \"pass\"\n");
    let e = compile_in(dir.path(), &dropping).unwrap();
    assert_eq!(
        e.image.settings_flags,
        SETTING_DNS_INSPECT | SETTING_DNS_MALFORMED_PASS
    );
    let d = diff(&a.image, &e.image);
    assert!(
        d.to_string().contains(
            "~ dns inspect, action nxdomain, malformed drop, seed 0 -> inspect, action drop, malformed pass, seed 0"
        ),
        "{d}"
    );
}

#[test]
fn sinkhole_addresses_reach_the_image() {
    let dir = dir_with_feeds(&FIXTURES);
    let policy = format!(
        "{BASE}{FEEDS}\n[domains]\naction = \"sinkhole\"\nsinkhole_v4 = \"192.0.2.53\"\nsinkhole_ttl = 30\n"
    );
    let c = compile_in(dir.path(), &policy).unwrap();
    assert_eq!(
        c.image.settings_flags,
        SETTING_DNS_INSPECT | SETTING_DNS_NXDOMAIN | SETTING_DNS_SINKHOLE_V4
    );
    assert_eq!(
        c.image.sinkhole,
        Sinkhole {
            v4: Some("192.0.2.53".parse().unwrap()),
            v6: None,
            ttl: 30,
        }
    );
    let plain = compile_in(dir.path(), &format!("{BASE}{FEEDS}")).unwrap();
    assert_eq!(plain.image.sinkhole, Sinkhole::default());
    assert_ne!(plain.image.hash(), c.image.hash());
    let d = diff(&plain.image, &c.image).to_string();
    assert!(
        d.contains("~ sinkhole off -> A 192.0.2.53, AAAA -, ttl 30"),
        "{d}"
    );
}

#[test]
fn without_domain_feeds_nothing_is_inspected() {
    let c = common::compile_text(BASE).unwrap();
    assert_eq!(
        c.image.settings_flags, 0,
        "no DNS bits without domain feeds"
    );
    assert!(c.image.domains.is_empty());
    assert!(c.summary.domain_feeds.is_empty());
    assert!(!c.summary.to_string().contains("domain feeds:"));

    let c = common::compile_text(&format!("{BASE}\n[domains]\naction = \"drop\"\n")).unwrap();
    assert_eq!(c.image.settings_flags, 0);
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "p.toml:32: domains: [domains] without any [[domain_feed]]: DNS queries are not inspected"
        ]
    );
}

#[test]
fn refusals_name_file_line_and_field() {
    let feed = |extra: &str| {
        format!(
            "{BASE}\n[[domain_feed]]\nname = \"d\"\npath = \"feeds/plain.list\"\nformat = \"list\"\n{extra}"
        )
    };
    // BASE has 30 lines; the blank line makes `[[domain_feed]]` line 32.
    assert_eq!(
        err(&feed("").replace("format = \"list\"", "format = \"adblock\"")),
        "p.toml:35: domain_feed.format: unknown variant `adblock`, expected one of `hosts`, `list`, `rpz`"
    );
    assert_eq!(
        err(&feed("scope = \"exact\"\n")),
        "p.toml:36: domain_feed.scope: unknown field `scope`, expected one of `name`, `description`, `path`, `format`, `exact_only`"
    );
    assert_eq!(
        err(&feed("exact_only = \"yes\"\n")),
        "p.toml:36: domain_feed.exact_only: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        err(&feed("").replace("feeds/plain.list", "../etc/hosts")),
        "p.toml:34: domain_feed.path: \"../etc/hosts\" must be a relative path inside the policy's directory (no \"..\", not absolute)"
    );
    assert_eq!(
        err(&feed("").replace("feeds/plain.list", "/etc/hosts")),
        "p.toml:34: domain_feed.path: \"/etc/hosts\" must be a relative path inside the policy's directory (no \"..\", not absolute)"
    );
    assert_eq!(
        err(&feed(
            "\n[[domain_feed]]\nname = \"d\"\npath = \"x\"\nformat = \"rpz\"\n"
        )),
        "p.toml:38: domain_feed.name: duplicate domain feed name \"d\" (first at line 33)"
    );
    assert_eq!(
        err(&feed("").replace(
            "[[domain_feed]]",
            "[[feed]]\nname = \"d\"\npath = \"f.txt\"\nformat = \"plain\"\n\n[[domain_feed]]"
        )),
        "p.toml:38: domain_feed.name: \"d\" is already the name of the [[feed]] at line 34; alerts name feeds, so names must differ"
    );
    assert_eq!(
        err(&feed("\n[domains]\naction = \"refuse\"\n")),
        "p.toml:38: domains.action: unknown action \"refuse\"; expected \"nxdomain\", \"sinkhole\" or \"drop\""
    );
    assert_eq!(
        err(&feed("\n[domains]\naction = \"sinkhole\"\n")),
        "p.toml:38: domains.action: action \"sinkhole\" needs sinkhole_v4 and/or sinkhole_v6"
    );
    assert_eq!(
        err(&feed(
            "\n[domains]\naction = \"sinkhole\"\nsinkhole_v4 = \"2001:db8::1\"\n"
        )),
        "p.toml:39: domains.sinkhole_v4: \"2001:db8::1\" is not an IPv4 address: invalid IPv4 address syntax"
    );
    assert_eq!(
        err(&feed(
            "\n[domains]\naction = \"sinkhole\"\nsinkhole_v6 = \"::1\"\nsinkhole_ttl = -1\n"
        )),
        "p.toml:40: domains.sinkhole_ttl: -1 is not a TTL (0 to 2147483647 seconds)"
    );
    assert_eq!(
        err(&feed("\n[domains]\nmalformed = \"inspect\"\n")),
        "p.toml:38: domains.malformed: unknown handling \"inspect\"; expected \"drop\" or \"pass\""
    );
    assert_eq!(
        err(&feed("\n[domains]\nttl = 5\n")),
        "p.toml:38: domains.ttl: unknown field `ttl`, expected one of `action`, `malformed`, `sinkhole_v4`, `sinkhole_v6`, `sinkhole_ttl`, `sni_ports`, `learn_ttl_max_secs`"
    );
}

#[test]
fn feed_files_are_read_with_their_errors_located() {
    let dir = dir_with_feeds(&["bad-list.txt"]);
    let policy = |path: &str| {
        format!("{BASE}\n[[domain_feed]]\nname = \"d\"\npath = \"{path}\"\nformat = \"list\"\n")
    };
    // A missing file names the policy line of the path.
    let e = compile_in(dir.path(), &policy("feeds/missing.list")).unwrap_err();
    let at = format!(
        "{}:34: domain_feed.path: ",
        dir.path().join("policy.toml").display()
    );
    assert!(e.starts_with(&at), "{e}");
    assert!(e.contains("missing.list"), "{e}");
    // A bad line refuses the policy and names the feed file and its line.
    let e = compile_in(dir.path(), &policy("feeds/bad-list.txt")).unwrap_err();
    let feed = dir.path().join("feeds/bad-list.txt");
    assert!(e.starts_with(&format!("{}:", feed.display())), "{e}");
    assert!(e.contains(": entry: "), "{e}");
}
