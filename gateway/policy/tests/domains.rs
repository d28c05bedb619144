//! Domain feeds (issue 6): the three formats as real feeds write them, normalisation, RPZ actions,
//! de-duplication and the data-path decision, and a million-name hosts file and RPZ zone.
//!
//! Fixtures: `tests/fixtures/domains/` — `ransomware.txt` is the Block List Project snapshot from
//! `/work/shared/feeds` (unchanged); the others are modelled on URLhaus and StevenBlack hosts files,
//! an adblock DNS filter and a SOC's RPZ zone. Expected values are computed independently of the
//! parser where the file is large, and written out where it is small.
//!
//! Figures for 1,000,000 names: `cargo test -p gateway-policy --test domains -- --nocapture million`
//! (add `--release` for production speed). Timings are printed, never asserted.
#![allow(clippy::unwrap_used)] // reason: test code

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gateway_common::dname;
use gateway_policy::domains::{
    Action, DomainEntries, DomainFeed, DomainFormat, DomainSet, Scope, Via, load_domains,
    normalise, parse_domains,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/domains")
        .join(name)
}

fn load(name: &str, format: DomainFormat) -> DomainEntries {
    load_domains(&fixture(name), format, Scope::Subtree).unwrap()
}

fn refusal(name: &str, format: DomainFormat) -> String {
    let err = load_domains(&fixture(name), format, Scope::Subtree).unwrap_err();
    // Messages name the file as given; make them independent of the checkout's location.
    err.to_string()
        .replace(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/"), "")
}

fn names(e: &DomainEntries) -> Vec<(&str, u32)> {
    e.iter().map(|d| (d.name, d.line)).collect()
}

fn one_feed<'a>(name: &'a str, entries: &'a DomainEntries) -> [DomainFeed<'a>; 1] {
    [DomainFeed {
        id: 1,
        name,
        entries,
    }]
}

// --- Hosts files ------------------------------------------------------------------------------------

#[test]
fn real_ransomware_hosts_feed() {
    let e = load("ransomware.txt", DomainFormat::Hosts);
    let text = std::fs::read_to_string(fixture("ransomware.txt")).unwrap();
    // Independent of the parser: every non-comment line is "0.0.0.0 name".
    let expected: Vec<(String, u32)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(i, l)| {
            let mut f = l.split_whitespace();
            assert_eq!(f.next(), Some("0.0.0.0"));
            (f.next().unwrap().to_string(), i as u32 + 1)
        })
        .collect();
    assert_eq!(expected.len(), 1904, "the file's header says 1,904 entries");
    let got: Vec<(String, u32)> = e.iter().map(|d| (d.name.to_string(), d.line)).collect();
    assert_eq!(got, expected);
    assert!(
        e.iter()
            .all(|d| d.scope == Scope::Subtree && d.sinkhole.is_none())
    );
    assert_eq!((e.ignored_local, e.unsupported), (0, 0));
    assert!(e.warnings.is_empty());

    // The set: distinct names, minus those whose listed parent already blocks them.
    let set = DomainSet::build(&one_feed("ransomware", &e), 0).unwrap();
    let distinct: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let covered = distinct
        .iter()
        .filter(|n| {
            let mut rest = **n;
            while let Some((_, parent)) = rest.split_once('.') {
                if distinct.contains(parent) {
                    return true;
                }
                rest = parent;
            }
            false
        })
        .count();
    let stats = &set.feeds()[0];
    println!(
        "ransomware.txt: {} read, {} duplicates, {} covered, {} rules",
        stats.read, stats.duplicates, stats.covered, stats.blocks
    );
    assert_eq!(stats.duplicates as usize, expected.len() - distinct.len());
    assert_eq!(stats.covered as usize, covered);
    assert_eq!(set.len(), distinct.len() - covered);
    for (name, _) in &expected {
        let m = set.decide(name).unwrap();
        assert_eq!(m.action, Action::Block, "{name}");
        let sub = format!("www.{name}");
        assert_eq!(set.decide(&sub).unwrap().via, Via::Parent, "{sub}");
    }
}

#[test]
fn urlhaus_style_hosts_file() {
    let e = load("urlhaus-hosts.txt", DomainFormat::Hosts);
    assert_eq!(e.ignored_local, 2, "127.0.0.1 localhost, ::1 localhost");
    assert_eq!(e.len(), 24);
    assert_eq!(e.get(0).unwrap().name, "0-0-0-0-0-0proxy.tserv.test");
    assert_eq!(e.get(0).unwrap().line, 14);
    assert_eq!(e.get(23).unwrap().name, "zz-drop.gq");
    assert!(
        e.iter().all(|d| d.sinkhole.is_none()),
        "127.0.0.1 is not a sinkhole"
    );
    let set = DomainSet::build(&one_feed("urlhaus", &e), 0).unwrap();
    // payload-host.ru is listed: its cdn/dl/files hosts are covered by it.
    assert_eq!(set.feeds()[0].covered, 3);
    assert_eq!(set.len(), 21);
    assert_eq!(
        set.decide("dl.payload-host.ru").unwrap().name,
        "payload-host.ru"
    );
    assert!(set.decide("payload-host.ru.example").is_none());
}

#[test]
fn messy_hosts_file_normalises_case_dots_and_idna() {
    let e = load("messy-hosts.txt", DomainFormat::Hosts);
    // localhost ×3, localhost.localdomain, local, broadcasthost, ip6-localhost, ip6-loopback,
    // ip6-localnet, ip6-mcastprefix, ip6-allnodes, ip6-allrouters, ip6-allhosts, 0.0.0.0
    assert_eq!(e.ignored_local, 14);
    assert_eq!(
        names(&e),
        [
            ("tracker.example.com", 18),
            ("tracker.example.com", 19),
            ("ads.example.net", 20),
            ("metrics.example.net", 20),
            ("xn--bcher-kva.example", 21),
            ("xn--bcher-kva.example", 22),
            ("_dmarc-spoof.example.org", 23),
            ("pixel.ads.example.net", 24),
            ("redirect.example.org", 25),
        ]
    );
    let sink: IpAddr = "192.0.2.53".parse().unwrap();
    assert_eq!(e.get(8).unwrap().sinkhole, Some(sink));
    let set = DomainSet::build(&one_feed("messy", &e), 0).unwrap();
    let s = &set.feeds()[0];
    assert_eq!((s.duplicates, s.covered, s.blocks), (2, 1, 6));
    assert_eq!(
        set.decide("Bücher.example"),
        None,
        "queries arrive as punycode"
    );
    assert_eq!(
        set.decide("WWW.XN--BCHER-KVA.EXAMPLE.").unwrap().name,
        "xn--bcher-kva.example"
    );
    assert_eq!(
        set.decide("redirect.example.org").unwrap().sinkhole.v4,
        Some("192.0.2.53".parse().unwrap())
    );
}

#[test]
fn crlf_line_endings() {
    let e = load("crlf-hosts.txt", DomainFormat::Hosts);
    assert_eq!(
        names(&e),
        [("crlf-one.example", 2), ("crlf-two.example", 4)]
    );
}

#[test]
fn exact_only_policy() {
    let e = load_domains(
        &fixture("urlhaus-hosts.txt"),
        DomainFormat::Hosts,
        Scope::Exact,
    )
    .unwrap();
    assert!(e.iter().all(|d| d.scope == Scope::Exact));
    let set = DomainSet::build(&one_feed("urlhaus", &e), 0).unwrap();
    assert_eq!(
        set.len(),
        24,
        "nothing is covered when nothing reaches below"
    );
    assert!(set.decide("www.payload-host.ru").is_none());
    assert!(set.decide("payload-host.ru").is_some());
}

#[test]
fn bad_hosts_line_refuses_the_feed_with_file_and_line() {
    assert_eq!(
        refusal("bad-hosts.txt", DomainFormat::Hosts),
        "fixtures/domains/bad-hosts.txt:4: entry: \"http://evil.example/payload.exe\" contains ':'; a domain name holds letters, digits, '-' and '_'"
    );
}

// --- Plain and adblock lists -------------------------------------------------------------------------

#[test]
fn plain_list() {
    let e = load("plain.list", DomainFormat::List);
    let got: Vec<_> = e.iter().map(|d| (d.name, d.line, d.scope)).collect();
    assert_eq!(
        got,
        [
            ("phish-login.example.com", 3, Scope::Subtree),
            ("malvertising.example", 4, Scope::Subtree),
            ("c2.example.net", 5, Scope::Subtree),
            ("mixed-case.example.org", 6, Scope::Subtree),
            ("company.example", 7, Scope::Subtree),
        ]
    );
    let exact = load_domains(&fixture("plain.list"), DomainFormat::List, Scope::Exact).unwrap();
    let scopes: Vec<_> = exact.iter().map(|d| d.scope).collect();
    assert_eq!(
        scopes,
        [
            Scope::Exact,
            Scope::Subtree,
            Scope::Subtree,
            Scope::Exact,
            Scope::Exact
        ],
        "explicit *. and . stay subtrees under an exact-only policy"
    );
}

#[test]
fn adblock_list_with_an_exception() {
    let e = load("adblock.txt", DomainFormat::List);
    let got: Vec<_> = e.iter().map(|d| (d.name, d.line, d.action)).collect();
    assert_eq!(
        got,
        [
            ("ads.example.com", 4, Action::Block),
            ("telemetry.example.net", 5, Action::Block),
            ("cdn.ads.example.com", 6, Action::Pass),
            ("banners.example.org", 7, Action::Block),
        ]
    );
    let set = DomainSet::build(&one_feed("adblock", &e), 0).unwrap();
    assert_eq!(
        set.decide("x.ads.example.com").unwrap().action,
        Action::Block
    );
    assert_eq!(
        set.decide("img.cdn.ads.example.com").unwrap().action,
        Action::Pass
    );
}

#[test]
fn bad_list_line() {
    assert_eq!(
        refusal("bad-list.txt", DomainFormat::List),
        format!(
            "fixtures/domains/bad-list.txt:2: entry: \"too-long-label-{a}…\" has a label of 75 bytes (\"too-long-label-{a}…\"); at most 63",
            a = "a".repeat(49),
        )
    );
}

// --- RPZ -----------------------------------------------------------------------------------------------

#[test]
fn rpz_zone() {
    let e = load("threat.rpz", DomainFormat::Rpz);
    let got: Vec<_> = e
        .iter()
        .map(|d| (d.name, d.line, d.scope, d.action))
        .collect();
    use Action::{Block, Pass};
    use Scope::{Below, Exact};
    assert_eq!(
        got,
        [
            ("evil-c2.example", 14, Exact, Block),
            ("evil-c2.example", 15, Below, Block),
            ("nodata.example", 16, Exact, Block),
            ("dropme.example", 17, Exact, Block),
            ("phish.example.net", 18, Exact, Block),
            ("sinkholed.example", 19, Exact, Block),
            ("sinkholed.example", 20, Exact, Block),
            ("walled.example", 21, Exact, Block),
            ("shady-cdn.example", 22, Below, Block),
            ("good.shady-cdn.example", 23, Exact, Pass),
        ]
    );
    assert_eq!(e.unsupported, 3, "rpz-tcp-only, rpz-ip, rpz-nsdname");
    let warnings: Vec<String> = e
        .warnings
        .iter()
        .map(|w| w.to_string().rsplit_once("domains/").unwrap().1.to_string())
        .collect();
    assert_eq!(
        warnings,
        [
            "threat.rpz:24: entry: \"tcp-only.example\" CNAME rpz-tcp-only. (answer over TCP only) is not a block; skipped",
            "threat.rpz:27: entry: \"32.10.2.0.192.rpz-ip\" is an rpz-ip (response address) trigger; only query-name triggers are enforced, skipped",
            "threat.rpz:28: entry: \"ns.evil-c2.example.rpz-nsdname\" is an rpz-nsdname (name-server name) trigger; only query-name triggers are enforced, skipped",
        ]
    );

    let set = DomainSet::build(&one_feed("soc-rpz", &e), 0).unwrap();
    let d = |q: &str| set.decide(q).map(|m| (m.action, m.name, m.via));
    assert_eq!(
        d("evil-c2.example"),
        Some((Block, "evil-c2.example", Via::Name))
    );
    assert_eq!(
        d("a.b.evil-c2.example"),
        Some((Block, "evil-c2.example", Via::Parent))
    );
    // `*.shady-cdn.example` does not match the apex (RPZ wildcard semantics) ...
    assert_eq!(d("shady-cdn.example"), None);
    assert_eq!(
        d("img.shady-cdn.example"),
        Some((Block, "shady-cdn.example", Via::Parent))
    );
    // ... and the passthru on a closer name wins; it is exact, so names under it are blocked.
    assert_eq!(
        d("good.shady-cdn.example"),
        Some((Pass, "good.shady-cdn.example", Via::Name))
    );
    assert_eq!(
        d("x.good.shady-cdn.example"),
        Some((Block, "shady-cdn.example", Via::Parent))
    );
    assert_eq!(d("tcp-only.example"), None);
    let sink = set.decide("sinkholed.example").unwrap().sinkhole;
    assert_eq!(sink.v4, Some("192.0.2.250".parse().unwrap()));
    assert_eq!(sink.v6, Some("2001:db8::250".parse().unwrap()));
    let r = set.get("evil-c2.example").unwrap();
    assert_eq!(r.flags, dname::BLOCK_APEX | dname::BLOCK_BELOW);
    assert_eq!(r.hash, dname::hash_dotted(0, b"evil-c2.example"));
}

#[test]
fn rpz_record_outside_the_zone() {
    assert_eq!(
        refusal("bad-zone.rpz", DomainFormat::Rpz),
        "fixtures/domains/bad-zone.rpz:4: entry: \"bad.example.other.zone.\" is outside the zone rpz.soc.example."
    );
}

// --- Across feeds --------------------------------------------------------------------------------------

#[test]
fn dedup_across_feeds_and_formats() {
    let hosts = parse_domains(
        "0.0.0.0 shared.example\n0.0.0.0 www.shared.example\n0.0.0.0 only-hosts.example\n",
        Path::new("a.hosts"),
        DomainFormat::Hosts,
        Scope::Exact,
    )
    .unwrap();
    let list = parse_domains(
        "SHARED.example.\n*.shared.example\n",
        Path::new("b.list"),
        DomainFormat::List,
        Scope::Exact,
    )
    .unwrap();
    let rpz = parse_domains(
        "$ORIGIN rpz.\n@ SOA ns. h. 1 2 3 4 5\nwww.shared.example CNAME rpz-passthru.\n",
        Path::new("c.rpz"),
        DomainFormat::Rpz,
        Scope::Subtree,
    )
    .unwrap();
    let set = DomainSet::build(
        &[
            DomainFeed {
                id: 5,
                name: "hosts",
                entries: &hosts,
            },
            DomainFeed {
                id: 6,
                name: "list",
                entries: &list,
            },
            DomainFeed {
                id: 7,
                name: "rpz",
                entries: &rpz,
            },
        ],
        0x5eed,
    )
    .unwrap();
    let shared = set.get("shared.example").unwrap();
    assert_eq!(shared.flags, dname::BLOCK_APEX | dname::BLOCK_BELOW);
    assert_eq!(
        shared.block_feed,
        Some(6),
        "the list widened it to a subtree"
    );
    let www = set.get("www.shared.example").unwrap();
    assert_eq!(www.flags, dname::BLOCK_APEX | dname::PASS_APEX);
    assert_eq!((www.block_feed, www.pass_feed), (Some(5), Some(7)));
    assert_eq!(
        set.decide("www.shared.example").unwrap().action,
        Action::Pass
    );
    assert_eq!(set.decide("www.shared.example").unwrap().feed, 7);
    assert_eq!(
        set.decide("x.www.shared.example").unwrap().action,
        Action::Block
    );
    assert_eq!(set.decide("x.www.shared.example").unwrap().feed, 6);
    let counts: Vec<_> = set
        .feeds()
        .iter()
        .map(|f| (f.id, f.read, f.duplicates, f.blocks, f.exceptions))
        .collect();
    assert_eq!(
        counts,
        [(5, 3, 0, 2, 0), (6, 2, 2, 1, 0), (7, 1, 1, 0, 1)],
        "hosts owns www and only-hosts; both list entries fold into the hosts' shared.example, \
         which the list widened (so it owns it); the passthru folds into www"
    );
    assert_eq!(set.seed(), 0x5eed);
    assert_eq!(
        set.get("only-hosts.example").unwrap().hash,
        dname::hash_dotted(0x5eed, b"only-hosts.example")
    );
}

#[test]
fn wire_and_text_queries_agree() {
    let e = load("threat.rpz", DomainFormat::Rpz);
    let set = DomainSet::build(&one_feed("rpz", &e), 99).unwrap();
    for q in [
        "evil-c2.example",
        "A.B.Evil-C2.Example",
        "good.shady-cdn.example",
        "x.good.shady-cdn.example",
        "unlisted.example",
    ] {
        let mut wire = Vec::new();
        for label in q.split('.') {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        assert_eq!(set.decide_wire(&wire).unwrap(), set.decide(q), "{q}");
    }
}

#[test]
fn normalise_is_public_for_the_policy_schema() {
    assert_eq!(
        normalise("Bücher.Example.").unwrap(),
        "xn--bcher-kva.example"
    );
    assert_eq!(
        normalise("ex ample.com").unwrap_err().to_string(),
        "contains ' '; a domain name holds letters, digits, '-' and '_'"
    );
}

// --- A million names -------------------------------------------------------------------------------

/// Counts the heap bytes in use and their peak, so the million-name test reports what parsing and
/// building cost rather than what generating its input did. (Other tests of this binary run in
/// parallel; they allocate kilobytes.)
struct CountingAlloc;

static HEAP_NOW: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

fn heap_grew(bytes: usize) {
    let now = HEAP_NOW.fetch_add(bytes, Ordering::Relaxed) + bytes;
    HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
            heap_grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// 1,000,000 distinct, realistic-looking names: random-ish hosts under a few thousand registered
/// domains, every 100th a registered domain itself (so hosts under it are covered).
fn million_names() -> Vec<String> {
    const TLDS: [&str; 12] = [
        "com", "net", "org", "top", "xyz", "ru", "cn", "info", "online", "site", "icu", "click",
    ];
    const WORDS: [&str; 8] = [
        "cdn", "update", "login", "secure", "files", "mail", "track", "api",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(1_000_000);
    let mut seen = BTreeSet::new();
    while out.len() < 1_000_000 {
        // xorshift64*: deterministic, no dependency.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let domain = format!(
            "{}{:x}.{}",
            WORDS[(r >> 8) as usize % WORDS.len()],
            (r >> 16) % 4093,
            TLDS[(r >> 4) as usize % TLDS.len()]
        );
        let name = if r.is_multiple_of(100) {
            domain
        } else {
            format!("{}{:x}.{domain}", WORDS[r as usize % WORDS.len()], r >> 40)
        };
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

fn collisions_of<F: Fn(u64) -> u64>(hashes: &[u64], part: F) -> usize {
    let mut v: Vec<u64> = hashes.iter().map(|&h| part(h)).collect();
    v.sort_unstable();
    v.windows(2).filter(|w| w[0] == w[1]).count()
}

#[test]
fn million_name_hosts_file_and_rpz_zone() {
    let names = million_names();
    let dir = tempfile::tempdir().unwrap();

    let mut hosts = String::with_capacity(40 * names.len());
    hosts.push_str("# generated hosts file\n127.0.0.1 localhost\n");
    for chunk in names.chunks(2) {
        // Mostly one name a line, every tenth line two, as aggregated hosts files do.
        if chunk.len() == 2 && chunk[0].len() % 10 == 0 {
            let _ = writeln!(hosts, "0.0.0.0 {} {}", chunk[0], chunk[1]);
        } else {
            for n in chunk {
                let _ = writeln!(hosts, "0.0.0.0 {n}");
            }
        }
    }
    let mut zone = String::with_capacity(40 * names.len());
    zone.push_str("$TTL 300\n$ORIGIN rpz.test.\n@ SOA ns.rpz.test. h.rpz.test. ( 1 3600 600 86400 60 )\n  NS ns.rpz.test.\n");
    for n in &names {
        let _ = writeln!(zone, "{n} CNAME .");
    }
    let hosts_path = dir.path().join("million.hosts");
    let zone_path = dir.path().join("million.rpz");
    std::fs::write(&hosts_path, &hosts).unwrap();
    std::fs::write(&zone_path, &zone).unwrap();
    let (hosts_len, zone_len) = (hosts.len(), zone.len());
    drop((hosts, zone));

    // The hash spreads a million real-looking names like a random function: the 32-bit halves
    // collide as often as the birthday bound says, the full 64 bits not at all.
    let hashes: Vec<u64> = names
        .iter()
        .map(|n| dname::hash_dotted(0, n.as_bytes()))
        .collect();
    let n = hashes.len() as f64;
    let expected32 = n * (n - 1.0) / 2.0 / 2f64.powi(32);
    let (low, high, full) = (
        collisions_of(&hashes, |h| h & 0xffff_ffff),
        collisions_of(&hashes, |h| h >> 32),
        collisions_of(&hashes, |h| h),
    );
    println!(
        "hash of 1,000,000 names: 32-bit collisions low {low} high {high} (birthday bound {expected32:.0}), 64-bit {full}"
    );
    assert_eq!(full, 0);
    assert!(low < 3 * expected32 as usize && high < 3 * expected32 as usize);
    drop(hashes);

    for (path, format, len) in [
        (&hosts_path, DomainFormat::Hosts, hosts_len),
        (&zone_path, DomainFormat::Rpz, zone_len),
    ] {
        let base = HEAP_NOW.load(Ordering::Relaxed);
        HEAP_PEAK.store(base, Ordering::Relaxed);
        let t = Instant::now();
        let entries = load_domains(path, format, Scope::Subtree).unwrap();
        let parsed = t.elapsed();
        assert_eq!(entries.len(), 1_000_000);
        let t = Instant::now();
        let set = DomainSet::build(&one_feed("million", &entries), 0x1234).unwrap();
        let built = t.elapsed();
        let peak = HEAP_PEAK.load(Ordering::Relaxed) - base;
        let with_entries = HEAP_NOW.load(Ordering::Relaxed) - base;
        let s = &set.feeds()[0];
        let t = Instant::now();
        let mut blocked = 0;
        for n in names.iter().step_by(10) {
            if set.decide(n).is_some() {
                blocked += 1;
            }
        }
        let lookups = t.elapsed();
        assert_eq!(blocked, 100_000);
        println!(
            "{format}: {:.1} MB file; parse {parsed:.2?}, build {built:.2?}: {} rules, {} covered, {} duplicates; \
             heap: peak {:.1} MB while loading and building (file text included), \
             entries + set {:.1} MB, set alone {:.1} MB; 100,000 decisions {lookups:.2?}",
            mb(len),
            set.len(),
            s.covered,
            s.duplicates,
            mb(peak),
            mb(with_entries),
            mb(set.heap_bytes()),
        );
        // Hosts names are subtrees: the hosts under a listed registered domain are covered. RPZ
        // owners are exact, so nothing is.
        match format {
            DomainFormat::Hosts => {
                assert!(s.covered > 0 && set.len() + s.covered as usize == 1_000_000)
            }
            _ => assert_eq!(set.len(), 1_000_000),
        }
    }
}
