//! Differences between two map images, for review before an apply (R8: frequent fleet-wide changes
//! must be easy to diff and review) and for the audit log.
//!
//! Values are compared by *name*, not id: inserting a feed renumbers every later feed, but an entry
//! still attributed to `spamhaus-drop` has not changed for the admin. Likewise for shared systems.

use std::collections::BTreeMap;
use std::fmt;
use std::iter::Peekable;

use gateway_common::dname::{BLOCK_APEX, BLOCK_BELOW, PASS_APEX, PASS_BELOW};
use gateway_common::maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use gateway_common::values::{
    DomainValue, GOVNET_DEDICATED, GOVNET_SHARED, PortRule, SETTING_DNS_INSPECT,
    SETTING_DNS_MALFORMED_PASS, SETTING_DNS_NXDOMAIN, SETTING_DROP_FRAGMENTS,
};

use crate::image::{FeedId, MapImage, SystemId, hex};

/// Examples kept per section by [`diff`].
pub const DEFAULT_EXAMPLES: usize = 5;

/// Changes of one section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SectionDiff {
    pub section: &'static str,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    /// The first few changes, rendered (`+ block4 198.51.100.7/32 (feed spamhaus-drop)`).
    pub examples: Vec<String>,
}

impl SectionDiff {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0 && self.changed == 0
    }

    fn total(&self) -> usize {
        self.added + self.removed + self.changed
    }
}

/// All changes from one image to another. Every section is present (possibly empty), in a fixed
/// order: feeds, systems, settings, then the map sections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDiff {
    pub old_hash: [u8; 32],
    pub new_hash: [u8; 32],
    pub sections: Vec<SectionDiff>,
}

impl ImageDiff {
    pub fn is_empty(&self) -> bool {
        self.sections.iter().all(SectionDiff::is_empty)
    }

    pub fn section(&self, name: &str) -> Option<&SectionDiff> {
        self.sections.iter().find(|s| s.section == name)
    }
}

impl fmt::Display for ImageDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes (image {})", short(&self.new_hash));
        }
        writeln!(
            f,
            "image {} -> {}",
            short(&self.old_hash),
            short(&self.new_hash)
        )?;
        for s in self.sections.iter().filter(|s| !s.is_empty()) {
            writeln!(
                f,
                "{}: +{} -{} ~{}",
                s.section, s.added, s.removed, s.changed
            )?;
            for e in &s.examples {
                writeln!(f, "  {e}")?;
            }
            if s.total() > s.examples.len() {
                writeln!(f, "  … {} more", s.total() - s.examples.len())?;
            }
        }
        Ok(())
    }
}

fn short(hash: &[u8; 32]) -> String {
    hex(&hash[..6])
}

/// Diff with up to [`DEFAULT_EXAMPLES`] examples per section.
pub fn diff(old: &MapImage, new: &MapImage) -> ImageDiff {
    diff_with_examples(old, new, DEFAULT_EXAMPLES)
}

/// Diff keeping up to `max_examples` rendered examples per section.
pub fn diff_with_examples(old: &MapImage, new: &MapImage, max_examples: usize) -> ImageDiff {
    let mut sections = Vec::with_capacity(15);
    let n = max_examples;

    let feeds = |img: &MapImage| {
        img.feeds
            .iter()
            .map(|f| (f.name.clone(), f.entries))
            .collect::<BTreeMap<_, _>>()
    };
    let (of, nf) = (feeds(old), feeds(new));
    sections.push(section("feeds", n, of.iter(), nf.iter(), |c| match c {
        Change::Added(k, v) => format!("+ feed {k} ({v} entries)"),
        Change::Removed(k, v) => format!("- feed {k} ({v} entries)"),
        Change::Changed(k, a, b) => format!("~ feed {k}: {a} -> {b} entries"),
    }));

    let systems = |img: &MapImage| {
        img.systems
            .iter()
            .map(|s| (s.name.clone(), ()))
            .collect::<BTreeMap<_, _>>()
    };
    let (os, ns) = (systems(old), systems(new));
    sections.push(section("systems", n, os.iter(), ns.iter(), |c| match c {
        Change::Added(k, _) => format!("+ system {k}"),
        Change::Removed(k, _) => format!("- system {k}"),
        Change::Changed(k, _, _) => format!("~ system {k}"),
    }));

    let settings = |img: &MapImage| {
        BTreeMap::from([
            ("fragments", fragments(img.settings_flags).to_string()),
            ("dns", dns_settings(img.settings_flags, img.domain_seed)),
            ("sinkhole", sinkhole(&img.sinkhole)),
            ("sni_learn", sni_learn_settings(img)),
            (
                "alert_limit",
                format!(
                    "{} per {} ms",
                    img.alert_limit.burst, img.alert_limit.window_ms
                ),
            ),
        ])
    };
    let (ost, nst) = (settings(old), settings(new));
    sections.push(section(
        "settings",
        n,
        ost.iter(),
        nst.iter(),
        |c| match c {
            Change::Added(k, v) => format!("+ {k} {v}"),
            Change::Removed(k, v) => format!("- {k} {v}"),
            Change::Changed(k, a, b) => format!("~ {k} {a} -> {b}"),
        },
    ));

    let (ofn, nfn) = (FeedNames(old), FeedNames(new));
    sections.push(section(
        "block4_exact",
        n,
        old.block4_exact.iter().map(|(k, v)| (k, ofn.get(*v))),
        new.block4_exact.iter().map(|(k, v)| (k, nfn.get(*v))),
        |c| blocked("block4", c, "/32"),
    ));
    sections.push(section(
        "block6_exact",
        n,
        old.block6_exact.iter().map(|(k, v)| (k, ofn.get(*v))),
        new.block6_exact.iter().map(|(k, v)| (k, nfn.get(*v))),
        |c| blocked("block6", c, "/128"),
    ));
    sections.push(section(
        "block4_prefixes",
        n,
        old.block4_prefixes.iter().map(|(k, v)| (k, ofn.get(*v))),
        new.block4_prefixes.iter().map(|(k, v)| (k, nfn.get(*v))),
        |c| blocked("block4", c, ""),
    ));
    sections.push(section(
        "block6_prefixes",
        n,
        old.block6_prefixes.iter().map(|(k, v)| (k, ofn.get(*v))),
        new.block6_prefixes.iter().map(|(k, v)| (k, nfn.get(*v))),
        |c| blocked("block6", c, ""),
    ));

    let unit = |c: Change<String, ()>, label: &str| match c {
        Change::Added(k, ()) => format!("+ {label} {k}"),
        Change::Removed(k, ()) => format!("- {label} {k}"),
        Change::Changed(k, (), ()) => format!("~ {label} {k}"),
    };
    sections.push(section(
        "isolated4",
        n,
        old.isolated4.iter().map(|k| (k, ())),
        new.isolated4.iter().map(|k| (k, ())),
        |c| unit(c.map_key(ToString::to_string), "isolated4"),
    ));
    sections.push(section(
        "isolated6",
        n,
        old.isolated6.iter().map(|k| (k, ())),
        new.isolated6.iter().map(|k| (k, ())),
        |c| unit(c.map_key(ToString::to_string), "isolated6"),
    ));

    let (osn, nsn) = (SystemNames(old), SystemNames(new));
    let system_value = |c: Change<String, &str>, label: &str| match c {
        Change::Added(k, v) => format!("+ {label} {k} (system {v})"),
        Change::Removed(k, v) => format!("- {label} {k} (system {v})"),
        Change::Changed(k, a, b) => format!("~ {label} {k} (system {a} -> {b})"),
    };
    sections.push(section(
        "shared4",
        n,
        old.shared4.iter().map(|(k, v)| (k, osn.get(*v))),
        new.shared4.iter().map(|(k, v)| (k, nsn.get(*v))),
        |c| system_value(c.map_key(ToString::to_string), "shared4"),
    ));
    sections.push(section(
        "shared6",
        n,
        old.shared6.iter().map(|(k, v)| (k, osn.get(*v))),
        new.shared6.iter().map(|(k, v)| (k, nsn.get(*v))),
        |c| system_value(c.map_key(ToString::to_string), "shared6"),
    ));

    let govnet_value = |c: Change<String, u32>, label: &str| match c {
        Change::Added(k, v) => format!("+ {label} {k} ({})", govnet_kind(v)),
        Change::Removed(k, v) => format!("- {label} {k} ({})", govnet_kind(v)),
        Change::Changed(k, a, b) => {
            format!("~ {label} {k} ({} -> {})", govnet_kind(a), govnet_kind(b))
        }
    };
    sections.push(section(
        "govnet4",
        n,
        old.govnet4.iter(),
        new.govnet4.iter(),
        |c| govnet_value(c.map_key(ToString::to_string).map_value(|v| *v), "govnet4"),
    ));
    sections.push(section(
        "govnet6",
        n,
        old.govnet6.iter(),
        new.govnet6.iter(),
        |c| govnet_value(c.map_key(ToString::to_string).map_value(|v| *v), "govnet6"),
    ));

    // Allow keys carry system ids: re-key by name so reordering systems is not a change.
    let allow = |label: &str, c: Change<(&str, String), &Vec<PortRule>>| match c {
        Change::Added((s, k), v) => format!("+ {label} {s} from {k}: {}", rules_text(v)),
        Change::Removed((s, k), v) => format!("- {label} {s} from {k}: {}", rules_text(v)),
        Change::Changed((s, k), a, b) => format!(
            "~ {label} {s} from {k}: {} -> {}",
            rules_text(a),
            rules_text(b)
        ),
    };
    let a4 = |img: &MapImage,
              names: &SystemNames<'_>|
     -> BTreeMap<(String, ipnet::Ipv4Net), Vec<PortRule>> {
        img.allow4
            .iter()
            .map(|((s, k), v)| ((names.get(*s).to_string(), *k), v.clone()))
            .collect()
    };
    let a6 = |img: &MapImage,
              names: &SystemNames<'_>|
     -> BTreeMap<(String, ipnet::Ipv6Net), Vec<PortRule>> {
        img.allow6
            .iter()
            .map(|((s, k), v)| ((names.get(*s).to_string(), *k), v.clone()))
            .collect()
    };
    let (oa4, na4) = (a4(old, &osn), a4(new, &nsn));
    sections.push(section("allow4", n, oa4.iter(), na4.iter(), |c| {
        allow("allow4", c.map_key(|(s, k)| (s.as_str(), k.to_string())))
    }));
    let (oa6, na6) = (a6(old, &osn), a6(new, &nsn));
    sections.push(section("allow6", n, oa6.iter(), na6.iter(), |c| {
        allow("allow6", c.map_key(|(s, k)| (s.as_str(), k.to_string())))
    }));

    let domain_feeds = |img: &MapImage| {
        img.domain_feeds
            .iter()
            .map(|f| (f.name.clone(), f.entries))
            .collect::<BTreeMap<_, _>>()
    };
    let (odf, ndf) = (domain_feeds(old), domain_feeds(new));
    sections.push(section(
        "domain_feeds",
        n,
        odf.iter(),
        ndf.iter(),
        |c| match c {
            Change::Added(k, v) => format!("+ domain feed {k} ({v} names)"),
            Change::Removed(k, v) => format!("- domain feed {k} ({v} names)"),
            Change::Changed(k, a, b) => format!("~ domain feed {k}: {a} -> {b} names"),
        },
    ));
    // The image holds hashes, not names: examples show the hash, the scope and the feed by name.
    let domain = |img: &MapImage, v: &DomainValue| {
        let feed = img
            .domain_feeds
            .get(v.feed as usize)
            .map_or("?", |f| f.name.as_str());
        format!("{} (feed {feed})", domain_flags(v.flags))
    };
    sections.push(section(
        "domains",
        n,
        old.domains.iter().map(|(k, v)| (*k, domain(old, v))),
        new.domains.iter().map(|(k, v)| (*k, domain(new, v))),
        |c| match c {
            Change::Added(k, v) => format!("+ domain #{k:016x} {v}"),
            Change::Removed(k, v) => format!("- domain #{k:016x} {v}"),
            Change::Changed(k, a, b) => format!("~ domain #{k:016x} {a} -> {b}"),
        },
    ));

    ImageDiff {
        old_hash: old.hash(),
        new_hash: new.hash(),
        sections,
    }
}

/// One change of a keyed section.
enum Change<K, V> {
    Added(K, V),
    Removed(K, V),
    Changed(K, V, V),
}

impl<K, V> Change<K, V> {
    fn map_key<K2>(self, f: impl FnOnce(K) -> K2) -> Change<K2, V> {
        match self {
            Change::Added(k, v) => Change::Added(f(k), v),
            Change::Removed(k, v) => Change::Removed(f(k), v),
            Change::Changed(k, a, b) => Change::Changed(f(k), a, b),
        }
    }

    fn map_value<V2>(self, f: impl Fn(V) -> V2) -> Change<K, V2> {
        match self {
            Change::Added(k, v) => Change::Added(k, f(v)),
            Change::Removed(k, v) => Change::Removed(k, f(v)),
            Change::Changed(k, a, b) => Change::Changed(k, f(a), f(b)),
        }
    }
}

/// Merge two key-sorted streams into a section's counts and first `max` rendered examples.
fn section<K: Ord, V: PartialEq>(
    name: &'static str,
    max: usize,
    old: impl Iterator<Item = (K, V)>,
    new: impl Iterator<Item = (K, V)>,
    render: impl Fn(Change<K, V>) -> String,
) -> SectionDiff {
    let mut s = SectionDiff {
        section: name,
        ..SectionDiff::default()
    };
    let record = |c: Change<K, V>, s: &mut SectionDiff| {
        match &c {
            Change::Added(..) => s.added += 1,
            Change::Removed(..) => s.removed += 1,
            Change::Changed(..) => s.changed += 1,
        }
        if s.examples.len() < max {
            s.examples.push(render(c));
        }
    };
    let (mut o, mut n): (Peekable<_>, Peekable<_>) = (old.peekable(), new.peekable());
    loop {
        let order = match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some((k, v)) = o.next() {
                    record(Change::Removed(k, v), &mut s);
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some((k, v)) = n.next() {
                    record(Change::Added(k, v), &mut s);
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some((k, a)), Some((_, b))) = (o.next(), n.next())
                    && a != b
                {
                    record(Change::Changed(k, a, b), &mut s);
                }
            }
        }
    }
    s
}

struct FeedNames<'a>(&'a MapImage);

impl<'a> FeedNames<'a> {
    fn get(&self, id: FeedId) -> &'a str {
        self.0
            .feeds
            .get(id as usize)
            .map_or("?", |f| f.name.as_str())
    }
}

struct SystemNames<'a>(&'a MapImage);

impl<'a> SystemNames<'a> {
    fn get(&self, id: SystemId) -> &'a str {
        self.0
            .systems
            .get(id as usize)
            .map_or("?", |s| s.name.as_str())
    }
}

fn blocked<K: fmt::Display>(label: &str, c: Change<K, &str>, suffix: &str) -> String {
    match c {
        Change::Added(k, f) => format!("+ {label} {k}{suffix} (feed {f})"),
        Change::Removed(k, f) => format!("- {label} {k}{suffix} (feed {f})"),
        Change::Changed(k, a, b) => format!("~ {label} {k}{suffix} (feed {a} -> {b})"),
    }
}

fn fragments(flags: u32) -> &'static str {
    if flags & SETTING_DROP_FRAGMENTS != 0 {
        "drop"
    } else {
        "inspect"
    }
}

/// `inspect nxdomain, malformed drop, seed 0` or `off`.
/// SNI ports and the learnt-address cap; both only act with domain inspection on.
fn sni_learn_settings(img: &MapImage) -> String {
    if img.settings_flags & SETTING_DNS_INSPECT == 0 {
        return "off".to_string();
    }
    let ports: Vec<String> = img
        .sni_ports
        .iter()
        .filter(|p| **p != 0)
        .map(|p| p.to_string())
        .collect();
    let ports = if ports.is_empty() {
        "none".to_string()
    } else {
        ports.join(",")
    };
    let learn = match img.learn_ttl_max_secs {
        0 => "off".to_string(),
        s => format!("≤ {s} s"),
    };
    format!("sni ports {ports}, learnt addresses {learn}")
}

fn dns_settings(flags: u32, seed: u64) -> String {
    if flags & SETTING_DNS_INSPECT == 0 {
        return "off".to_string();
    }
    let action = if flags & SETTING_DNS_NXDOMAIN != 0 {
        "nxdomain"
    } else {
        "drop"
    };
    let malformed = if flags & SETTING_DNS_MALFORMED_PASS != 0 {
        "pass"
    } else {
        "drop"
    };
    format!("inspect, action {action}, malformed {malformed}, seed {seed}")
}

fn sinkhole(s: &crate::image::Sinkhole) -> String {
    if *s == crate::image::Sinkhole::default() {
        return "off".to_string();
    }
    let v4 = s.v4.map_or_else(|| "-".to_string(), |a| a.to_string());
    let v6 = s.v6.map_or_else(|| "-".to_string(), |a| a.to_string());
    format!("A {v4}, AAAA {v6}, ttl {}", s.ttl)
}

/// `block name+below, pass below`: what a domain entry's flag bits say.
fn domain_flags(flags: u8) -> String {
    let part = |apex: u8, below: u8| match (flags & apex != 0, flags & below != 0) {
        (true, true) => Some("name+below"),
        (true, false) => Some("name"),
        (false, true) => Some("below"),
        (false, false) => None,
    };
    let mut out = Vec::new();
    if let Some(p) = part(BLOCK_APEX, BLOCK_BELOW) {
        out.push(format!("block {p}"));
    }
    if let Some(p) = part(PASS_APEX, PASS_BELOW) {
        out.push(format!("pass {p}"));
    }
    out.join(", ")
}

fn govnet_kind(v: u32) -> &'static str {
    match v {
        GOVNET_SHARED => "shared",
        GOVNET_DEDICATED => "dedicated",
        _ => "?",
    }
}

/// `tcp 443, tcp 8000-8080, icmp` — the way the policy file writes them.
pub fn rules_text(rules: &[PortRule]) -> String {
    rules
        .iter()
        .map(|r| {
            let name = match r.proto {
                PortRule::ANY_PROTO => return "any".to_string(),
                IPPROTO_ICMP | IPPROTO_ICMPV6 => return "icmp".to_string(),
                IPPROTO_TCP => "tcp".to_string(),
                IPPROTO_UDP => "udp".to_string(),
                p => format!("proto {p}"),
            };
            if r.port_lo == r.port_hi {
                format!("{name} {}", r.port_lo)
            } else {
                format!("{name} {}-{}", r.port_lo, r.port_hi)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;
    use crate::image::{FeedInfo, SystemInfo};

    fn base() -> MapImage {
        let mut img = MapImage {
            feeds: vec![
                FeedInfo {
                    name: "policy".into(),
                    entries: 1,
                },
                FeedInfo {
                    name: "spamhaus-drop".into(),
                    entries: 2,
                },
            ],
            systems: vec![SystemInfo { name: "db".into() }],
            ..MapImage::default()
        };
        img.block4_exact.insert("203.0.113.66".parse().unwrap(), 0);
        img.block4_prefixes
            .insert("1.10.16.0/20".parse().unwrap(), 1);
        img.block4_prefixes
            .insert("1.19.0.0/16".parse().unwrap(), 1);
        img.shared4.insert("10.200.1.10/32".parse().unwrap(), 0);
        img.allow4.insert(
            (0, "10.10.0.0/24".parse().unwrap()),
            vec![PortRule::new(6, 443, 443), PortRule::new(1, 0, 65535)],
        );
        img
    }

    #[test]
    fn identical_images_have_no_diff() {
        let d = diff(&base(), &base());
        assert!(d.is_empty());
        assert!(d.to_string().starts_with("no changes (image "));
    }

    #[test]
    fn changes_are_counted_and_rendered() {
        let old = base();
        let mut new = base();
        new.block4_exact.insert("198.51.100.7".parse().unwrap(), 1);
        new.block4_prefixes.remove(&"1.19.0.0/16".parse().unwrap());
        new.block4_prefixes
            .insert("1.10.16.0/20".parse().unwrap(), 0);
        new.feeds[1].entries = 1;
        new.settings_flags = SETTING_DROP_FRAGMENTS;
        new.allow4.insert(
            (0, "10.10.0.0/24".parse().unwrap()),
            vec![PortRule::new(6, 443, 443)],
        );
        let d = diff(&old, &new);
        let text = d.to_string();
        let body: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            body,
            [
                "feeds: +0 -0 ~1",
                "  ~ feed spamhaus-drop: 2 -> 1 entries",
                "settings: +0 -0 ~1",
                "  ~ fragments inspect -> drop",
                "block4_exact: +1 -0 ~0",
                "  + block4 198.51.100.7/32 (feed spamhaus-drop)",
                "block4_prefixes: +0 -1 ~1",
                "  ~ block4 1.10.16.0/20 (feed spamhaus-drop -> policy)",
                "  - block4 1.19.0.0/16 (feed spamhaus-drop)",
                "allow4: +0 -0 ~1",
                "  ~ allow4 db from 10.10.0.0/24: tcp 443, icmp -> tcp 443",
            ]
        );
    }

    #[test]
    fn renumbered_feeds_are_not_a_change() {
        let old = base();
        let mut new = base();
        new.feeds.insert(
            1,
            FeedInfo {
                name: "soc".into(),
                entries: 0,
            },
        );
        new.block4_prefixes.values_mut().for_each(|v| *v = 2);
        let d = diff(&old, &new);
        assert_eq!(
            d.section("block4_prefixes").map(SectionDiff::is_empty),
            Some(true)
        );
        assert_eq!(d.section("feeds").map(|s| s.added), Some(1));
    }

    #[test]
    fn examples_are_bounded() {
        let old = MapImage::default();
        let mut new = MapImage {
            feeds: vec![FeedInfo {
                name: "policy".into(),
                entries: 20,
            }],
            ..MapImage::default()
        };
        for i in 0..20u8 {
            new.block4_exact
                .insert(std::net::Ipv4Addr::new(192, 0, 2, i), 0);
        }
        let d = diff_with_examples(&old, &new, 3);
        let s = d.section("block4_exact").unwrap();
        assert_eq!((s.added, s.examples.len()), (20, 3));
        assert!(d.to_string().contains("  … 17 more\n"));
    }
}
