//! Policy + feeds + hardware profile → [`MapImage`].
//!
//! The image implements the verdict order of the data path (kept identical in the XDP program and the
//! reference model; see `gateway_common::Reason`):
//! 1. Parse; non-IP passes, malformed drops.
//! 2. `lan` ingress:
//!    1. destination in a blocklist → `blocklist`            (block4/6_exact, block4/6_prefixes)
//!    2. domain, with domain feeds (domains, domain_seed, settings flags):
//!       - (a) DNS query (UDP, or TCP with data, to port 53) for a listed name → `domain`
//!       - (b) TLS ClientHello to an SNI port whose server_name is listed → `domain` (sni_ports)
//!       - (c) destination a learnt address whose name still blocks → `domain` (learn_ttl_max_secs;
//!         the addresses are runtime state, not in the image)
//!    3. source isolated and not heading into the dedicated network → `isolated`  (isolated4/6, govnet)
//!    4. destination a shared system: source/protocol/port allowed → else `not_allowed`
//!       (shared4/6 → system; allow4/6 longest match of the source); route via dedicated → else
//!       `shared_via_internet`
//!    5. otherwise pass.
//! 3. `dedicated` ingress: source not in govnet → `dedicated_foreign`; not towards lan → `cross_network`.
//! 4. `internet` ingress: source in a blocklist → `blocklist_in`; source in govnet → `spoofed`;
//!    towards dedicated → `cross_network`; else pass.
//! 5. Every role, last, with domain feeds: a DNS response for a listed name that would pass →
//!    `domain` (its answers are learnt for 2 (c)).
//!
//! Rules the compiler applies so that a single lookup per map is enough in the data path:
//! - Blocklists: every feed's entries, minus `[blocklist] except` ranges (carved), plus the policy's own
//!   `[blocklist] prefixes` (feed 0, never carved), de-duplicated so no entry covers another; /32 and
//!   /128 entries go to the exact maps, the rest to the LPM maps.
//! - Allow rules: the value for (system, source prefix) is the union of the rules of that prefix and of
//!   every source prefix of the same system that covers it, so the longest match alone decides.
//! - govnet: shared prefixes (`GOVNET_SHARED`) and dedicated-zone prefixes (`GOVNET_DEDICATED`); a
//!   dedicated prefix containing a shared one keeps both entries (longest match).
//!
//! Compilation is deterministic: the same files give the same image, byte for byte (BTree order, ties
//! broken by feed id then line).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use gateway_common::Role;
use gateway_common::maps::{
    BLOCK4_EXACT_PER_SLOT, BLOCK4_LPM_PER_SLOT, BLOCK6_EXACT_PER_SLOT, BLOCK6_LPM_PER_SLOT,
    DOMAINS_PER_SLOT,
};
use gateway_common::values::{
    DomainValue, GOVNET_DEDICATED, GOVNET_SHARED, MAX_ALLOW_RULES, PortRule, SETTING_DNS_INSPECT,
    SETTING_DNS_MALFORMED_PASS, SETTING_DNS_NXDOMAIN, SETTING_DNS_SINKHOLE_V4,
    SETTING_DNS_SINKHOLE_V6, SETTING_DROP_FRAGMENTS,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::domains::{DomainFeed, DomainSet, Scope, parse_domains};
use crate::error::{ErrorKind, PolicyError, Warning, read_file};
use crate::feeds::{FeedFormat, Sourced, parse_feed};
use crate::image::{FeedId, FeedInfo, MapImage, SystemId, SystemInfo, hex};
use crate::policy::{DomainAction, Located, Policy, Protocol, load_policy, parse_policy};
use crate::prefixes::{Prefix, Tagged, carve, remove_covered};
use crate::profile::Profile;

/// Name of feed 0: the policy's own `[blocklist] prefixes`.
pub const INLINE_FEED: &str = "policy";

/// A compiled policy: the image, what an admin should look at, and a summary for review.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub image: MapImage,
    pub warnings: Vec<Warning>,
    pub summary: Summary,
    /// Where flows, alerts and metrics go (not part of the image: the daemon applies it).
    pub telemetry: crate::telemetry::Telemetry,
    /// The validated policy itself (gatewayd renders its nftables ruleset from it).
    pub policy: Policy,
}

/// What went into an image, for `gatewayctl check`, the audit log and golden tests. Contains no
/// absolute paths, so it is the same wherever the policy directory lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub policy: String,
    pub version: String,
    pub profile: String,
    pub image_hash: [u8; 32],
    pub feeds: Vec<FeedSummary>,
    /// Domain feeds in id order (empty without `[[domain_feed]]`).
    pub domain_feeds: Vec<DomainFeedSummary>,
    /// Entries per image section, in [`MapImage::sections`] order.
    pub sections: Vec<(&'static str, usize)>,
    pub warnings: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedSummary {
    pub name: String,
    /// `None` for the inline blocklist.
    pub format: Option<FeedFormat>,
    /// Path as written in the policy (`None` for the inline blocklist and remote feeds).
    pub path: Option<String>,
    /// URL of a remote feed.
    pub url: Option<String>,
    /// A remote feed's `ca` file, relative to the policy's directory (it travels with the policy).
    pub ca: Option<String>,
    /// Entries read from the file (or the policy).
    pub read: u64,
    /// Entries normalised because of host bits.
    pub normalised: u64,
    /// Entries removed or split by `[blocklist] except`.
    pub excepted: u64,
    /// Entries in the image after de-duplication (= `FeedInfo::entries`).
    pub entries: u64,
}

/// What one domain feed contributed: the set's counts, and the feed as the policy wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainFeedSummary {
    pub counts: crate::domains::DomainFeedStats,
    /// Path as written in the policy.
    pub path: String,
    pub exact_only: bool,
}

/// Entry count of each section of an image, in [`MapImage::sections`] order.
pub fn section_counts(image: &MapImage) -> Vec<(&'static str, usize)> {
    image.sections().iter().map(|s| (s.name, s.len)).collect()
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy {} version {}", self.policy, self.version)?;
        writeln!(f, "profile {}", self.profile)?;
        writeln!(f, "image sha256 {}", hex(&self.image_hash))?;
        writeln!(f, "feeds:")?;
        writeln!(
            f,
            "  {:>2}  {:<24} {:<8} {:>9} {:>10} {:>8} {:>9}  path",
            "id", "name", "format", "read", "normalised", "excepted", "entries"
        )?;
        for (id, feed) in self.feeds.iter().enumerate() {
            writeln!(
                f,
                "  {:>2}  {:<24} {:<8} {:>9} {:>10} {:>8} {:>9}  {}",
                id,
                feed.name,
                feed.format.map_or("inline", FeedFormat::as_str),
                feed.read,
                feed.normalised,
                feed.excepted,
                feed.entries,
                feed.path.as_deref().or(feed.url.as_deref()).unwrap_or("-")
            )?;
        }
        if !self.domain_feeds.is_empty() {
            writeln!(f, "domain feeds:")?;
            writeln!(
                f,
                "  {:>2}  {:<24} {:<6} {:>9} {:>7} {:>11} {:>10} {:>7} {:>9} {:>10}  path",
                "id",
                "name",
                "format",
                "read",
                "local",
                "unsupported",
                "duplicates",
                "covered",
                "blocks",
                "exceptions"
            )?;
            for (id, d) in self.domain_feeds.iter().enumerate() {
                writeln!(
                    f,
                    "  {:>2}  {:<24} {:<6} {:>9} {:>7} {:>11} {:>10} {:>7} {:>9} {:>10}  {}{}",
                    id,
                    d.counts.name,
                    d.counts.format.as_str(),
                    d.counts.read,
                    d.counts.ignored_local,
                    d.counts.unsupported,
                    d.counts.duplicates,
                    d.counts.covered,
                    d.counts.blocks,
                    d.counts.exceptions,
                    d.path,
                    if d.exact_only { " (exact only)" } else { "" }
                )?;
            }
        }
        writeln!(f, "sections:")?;
        for (name, n) in &self.sections {
            writeln!(f, "  {name:<16} {n:>9}")?;
        }
        writeln!(f, "warnings {}", self.warnings)
    }
}

/// Compile the policy file at `policy_path` for the box described by `profile`, reading the feed
/// files it names (relative to its directory).
pub fn compile(policy_path: &Path, profile: &Profile) -> Result<Compiled, PolicyError> {
    compile_with_store(policy_path, profile, None)
}

/// Like [`compile`], with remote feeds (`url = …`) read from their last good copy in `store`
/// (`<store>/<name>.<format>`, kept by the daemon's fetcher). A remote feed without a good copy
/// yet, or without a store, contributes nothing: the rest of the policy still applies.
pub fn compile_with_store(
    policy_path: &Path,
    profile: &Profile,
    store: Option<&Path>,
) -> Result<Compiled, PolicyError> {
    let (policy, warnings) = load_policy(policy_path, profile)?;
    compile_policy_with_store(&policy, profile, warnings, store)
}

/// Compile policy text; `policy_path` names it in messages and is the base of relative feed paths
/// (the feed files are read from disk).
pub fn compile_str(
    text: &str,
    policy_path: &Path,
    profile: &Profile,
) -> Result<Compiled, PolicyError> {
    let (policy, warnings) = parse_policy(text, policy_path, profile)?;
    compile_policy(&policy, profile, warnings)
}

/// Compile an already validated policy.
pub fn compile_policy(
    policy: &Policy,
    profile: &Profile,
    warnings: Vec<Warning>,
) -> Result<Compiled, PolicyError> {
    compile_policy_with_store(policy, profile, warnings, None)
}

/// [`compile_policy`] with the store of remote feeds (see [`compile_with_store`]).
pub fn compile_policy_with_store(
    policy: &Policy,
    profile: &Profile,
    mut warnings: Vec<Warning>,
    store: Option<&Path>,
) -> Result<Compiled, PolicyError> {
    let mut image = MapImage::default();
    let feeds = add_blocklists(policy, &mut image, &mut warnings, store)?;
    add_systems_and_networks(policy, &mut image);
    add_allow_rules(policy, &mut image)?;
    let domain_feeds = add_domains(policy, &mut image, &mut warnings)?;
    image.settings_flags = settings_flags(policy);
    image.sni_ports = policy.domains.sni_ports;
    image.learn_ttl_max_secs = policy.domains.learn_ttl_max_secs;
    // The data path rate-limits alerts per policy slot, so a new limit applies atomically with
    // the rest of the policy.
    image.alert_limit = crate::image::AlertLimit {
        burst: policy.telemetry.alerts.burst,
        window_ms: policy.telemetry.alerts.window_ms,
    };
    check_capacity(policy, &image)?;

    let summary = Summary {
        policy: policy.name.clone(),
        version: policy.version.clone(),
        profile: profile.name.clone(),
        image_hash: image.hash(),
        feeds,
        domain_feeds,
        sections: section_counts(&image),
        warnings: warnings.len(),
    };
    Ok(Compiled {
        image,
        warnings,
        summary,
        telemetry: policy.telemetry.clone(),
        policy: policy.clone(),
    })
}

/// The slot's `SETTING_*` bits.
fn settings_flags(policy: &Policy) -> u32 {
    let mut flags = 0;
    if policy.drop_fragments {
        flags |= SETTING_DROP_FRAGMENTS;
    }
    // Without domain feeds the data path does not look into DNS at all, and the DNS bits stay 0 so
    // such a policy's settings (and image hash) are what they were before domain blocking.
    if !policy.domain_feeds.is_empty() {
        flags |= SETTING_DNS_INSPECT;
        match policy.domains.action {
            DomainAction::Nxdomain => flags |= SETTING_DNS_NXDOMAIN,
            // Answered in place like NXDOMAIN; the family bits say which queries get an address.
            DomainAction::Sinkhole => {
                flags |= SETTING_DNS_NXDOMAIN;
                if policy.domains.sinkhole_v4.is_some() {
                    flags |= SETTING_DNS_SINKHOLE_V4;
                }
                if policy.domains.sinkhole_v6.is_some() {
                    flags |= SETTING_DNS_SINKHOLE_V6;
                }
            }
            DomainAction::Drop => {}
        }
        if policy.domains.pass_malformed {
            flags |= SETTING_DNS_MALFORMED_PASS;
        }
    }
    flags
}

/// The name-hash seed of the domain map. 0 for now, so the reference model, the tests and the data
/// path agree without passing a secret around; see [`MapImage::domain_seed`] for why a per-box
/// secret seed is the next step (FNV-1a chosen collisions against exception entries).
pub const DOMAIN_SEED: u64 = 0;

/// Domain feeds into the `domains` section (one entry per listed name, keyed by its hash); returns
/// the per-feed summary. A bad line refuses the policy (`file:line: entry: …`), as for address
/// feeds: a half-read list would silently unblock what it failed to read.
fn add_domains(
    policy: &Policy,
    image: &mut MapImage,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<DomainFeedSummary>, PolicyError> {
    let mut parsed = Vec::with_capacity(policy.domain_feeds.len());
    for feed in &policy.domain_feeds {
        let text = read_file(&feed.path, &policy.path, feed.line, "domain_feed.path")?;
        let bare = if feed.exact_only {
            Scope::Exact
        } else {
            Scope::Subtree
        };
        let mut entries = parse_domains(&text, &feed.path, feed.format, bare)?;
        drop(text);
        warnings.append(&mut entries.warnings);
        parsed.push(entries);
    }
    let inputs: Vec<DomainFeed<'_>> = policy
        .domain_feeds
        .iter()
        .zip(&parsed)
        .enumerate()
        .map(|(i, (feed, entries))| DomainFeed {
            id: FeedId::try_from(i).unwrap_or(FeedId::MAX),
            name: &feed.name,
            entries,
        })
        .collect();
    let set = DomainSet::build(&inputs, DOMAIN_SEED)?;
    drop(inputs);
    drop(parsed);
    if set.len() > DOMAINS_PER_SLOT as usize {
        let (line, field) = policy
            .domain_feeds
            .last()
            .map_or((1, "domain_feed"), |f| (f.line, "domain_feed.path"));
        check_limits(
            policy,
            &[("domains", set.len(), DOMAINS_PER_SLOT)],
            line,
            field,
        )?;
    }
    image.domain_seed = set.seed();
    if policy.domains.action == DomainAction::Sinkhole {
        image.sinkhole = crate::image::Sinkhole {
            v4: policy.domains.sinkhole_v4,
            v6: policy.domains.sinkhole_v6,
            ttl: policy.domains.sinkhole_ttl,
        };
    }
    // Rules come sorted by hash: the tree is built in bulk.
    image.domains = set
        .rules()
        .map(|r| {
            let feed = r.block_feed.or(r.pass_feed).unwrap_or(FeedId::MAX);
            (r.hash, DomainValue::new(r.flags, feed))
        })
        .collect();
    let summaries: Vec<DomainFeedSummary> = policy
        .domain_feeds
        .iter()
        .zip(set.feeds())
        .map(|(feed, st)| DomainFeedSummary {
            counts: st.clone(),
            path: feed.rel_path.clone(),
            exact_only: feed.exact_only,
        })
        .collect();
    image.domain_feeds = summaries
        .iter()
        .map(|d| FeedInfo {
            name: d.counts.name.clone(),
            entries: d.counts.blocks + d.counts.exceptions,
        })
        .collect();
    Ok(summaries)
}

/// Feeds and the inline blocklist into the four blocklist sections; returns the per-feed summary.
fn add_blocklists(
    policy: &Policy,
    image: &mut MapImage,
    warnings: &mut Vec<Warning>,
    store: Option<&Path>,
) -> Result<Vec<FeedSummary>, PolicyError> {
    let mut feeds = vec![FeedSummary {
        name: INLINE_FEED.to_string(),
        format: None,
        path: None,
        url: None,
        ca: None,
        read: policy.blocklist.len() as u64,
        normalised: 0,
        excepted: 0,
        entries: 0,
    }];

    let (mut b4, mut b6) = inline_entries(policy);
    let except4: Vec<Ipv4Net> = policy
        .except
        .iter()
        .filter_map(|p| as_v4(p.value))
        .collect();
    let except6: Vec<Ipv6Net> = policy
        .except
        .iter()
        .filter_map(|p| as_v6(p.value))
        .collect();
    for (i, feed) in policy.feeds.iter().enumerate() {
        let id = FeedId::try_from(i + 1).unwrap_or(FeedId::MAX);
        let file = match &feed.remote {
            None => Some(feed.path.clone()),
            Some(remote) => {
                let copy =
                    store.and_then(|s| crate::remote::last_good(s, &remote.name, remote.format));
                if copy.is_none() {
                    warnings.push(Warning {
                        path: policy.path.clone(),
                        line: feed.line,
                        field: "feed.url".into(),
                        message: format!(
                            "feed {:?} has no good copy yet: it blocks nothing until a download from {} succeeds",
                            feed.name, remote.url.url
                        ),
                    });
                }
                copy
            }
        };
        let field = if feed.remote.is_some() {
            "feed.url"
        } else {
            "feed.path"
        };
        let mut parsed = match &file {
            Some(f) => {
                let text = read_file(f, &policy.path, feed.line, field)?;
                parse_feed(&text, f, feed.format)?
            }
            None => crate::feeds::FeedEntries::default(),
        };
        warnings.append(&mut parsed.warnings);
        let read = parsed.len() as u64;
        let normalised = parsed.normalised;
        let excepted =
            add_feed(&mut b4, parsed.v4, id, &except4) + add_feed(&mut b6, parsed.v6, id, &except6);
        feeds.push(FeedSummary {
            name: feed.name.clone(),
            format: Some(feed.format),
            path: feed.remote.is_none().then(|| feed.rel_path.clone()),
            url: feed.remote.as_ref().map(|r| r.url.url.clone()),
            ca: feed
                .remote
                .as_ref()
                .and_then(|r| r.ca.as_deref())
                .and_then(|ca| ca.strip_prefix(policy.path.parent()?).ok())
                .map(|ca| ca.display().to_string()),
            read,
            normalised,
            excepted,
            entries: 0,
        });
    }
    remove_covered(&mut b4);
    remove_covered(&mut b6);
    check_blocklist_capacity(policy, &b4, &b6)?;
    protected_warnings(policy, &b4, &b6, warnings);
    let mut kept = vec![0u64; feeds.len()];
    for e in &b4 {
        kept[e.feed as usize] += 1;
    }
    for e in &b6 {
        kept[e.feed as usize] += 1;
    }
    // Input is sorted, so these collects build the trees in bulk.
    image.block4_exact = b4
        .iter()
        .filter(|e| e.net.prefix_len() == 32)
        .map(|e| (e.net.addr(), e.feed))
        .collect();
    image.block4_prefixes = b4
        .iter()
        .filter(|e| e.net.prefix_len() < 32)
        .map(|e| (e.net, e.feed))
        .collect();
    image.block6_exact = b6
        .iter()
        .filter(|e| e.net.prefix_len() == 128)
        .map(|e| (e.net.addr(), e.feed))
        .collect();
    image.block6_prefixes = b6
        .iter()
        .filter(|e| e.net.prefix_len() < 128)
        .map(|e| (e.net, e.feed))
        .collect();
    drop((b4, b6));
    for (summary, n) in feeds.iter_mut().zip(&kept) {
        summary.entries = *n;
    }
    image.feeds = feeds
        .iter()
        .map(|f| FeedInfo {
            name: f.name.clone(),
            entries: f.entries,
        })
        .collect();
    Ok(feeds)
}

/// Shared systems (shared4/6), the government networks (govnet4/6) and isolated hosts.
fn add_systems_and_networks(policy: &Policy, image: &mut MapImage) {
    for (id, system) in policy.systems.iter().enumerate() {
        let id = SystemId::try_from(id).unwrap_or(SystemId::MAX);
        image.systems.push(SystemInfo {
            name: system.name.clone(),
        });
        for p in &system.prefixes {
            match p.value {
                IpNet::V4(n) => {
                    image.shared4.insert(n, id);
                    image.govnet4.insert(n, GOVNET_SHARED);
                }
                IpNet::V6(n) => {
                    image.shared6.insert(n, id);
                    image.govnet6.insert(n, GOVNET_SHARED);
                }
            }
        }
    }
    if let Some(zone) = policy.zone(Role::Dedicated) {
        for p in &zone.prefixes {
            // A prefix that is both a shared system and the dedicated network stays "shared".
            match p.value {
                IpNet::V4(n) => {
                    image.govnet4.entry(n).or_insert(GOVNET_DEDICATED);
                }
                IpNet::V6(n) => {
                    image.govnet6.entry(n).or_insert(GOVNET_DEDICATED);
                }
            }
        }
    }
    for class in &policy.isolated {
        for h in &class.hosts {
            match h.value {
                IpNet::V4(n) => {
                    image.isolated4.insert(n);
                }
                IpNet::V6(n) => {
                    image.isolated6.insert(n);
                }
            }
        }
    }
}

/// Allow rules per (system, source prefix), folded so the longest source match alone decides.
fn add_allow_rules(policy: &Policy, image: &mut MapImage) -> Result<(), PolicyError> {
    for (id, system) in policy.systems.iter().enumerate() {
        let id = SystemId::try_from(id).unwrap_or(SystemId::MAX);
        let mut src4: BTreeMap<Ipv4Net, (Vec<PortRule>, u32)> = BTreeMap::new();
        let mut src6: BTreeMap<Ipv6Net, (Vec<PortRule>, u32)> = BTreeMap::new();
        for rule in &system.allow {
            for from in &rule.from {
                match from.value {
                    IpNet::V4(n) => add_rules(
                        &mut src4,
                        n,
                        rule_entries(rule.protocol, &rule.ports, false),
                        from.line,
                    ),
                    IpNet::V6(n) => add_rules(
                        &mut src6,
                        n,
                        rule_entries(rule.protocol, &rule.ports, true),
                        from.line,
                    ),
                }
            }
        }
        let has4 = system.prefixes.iter().any(|p| p.value.addr().is_ipv4());
        let has6 = system.prefixes.iter().any(|p| p.value.addr().is_ipv6());
        if has4 {
            for (net, rules) in fold_sources(policy, &system.name, &src4)? {
                image.allow4.insert((id, net), rules);
            }
        }
        if has6 {
            for (net, rules) in fold_sources(policy, &system.name, &src6)? {
                image.allow6.insert((id, net), rules);
            }
        }
    }
    Ok(())
}

fn as_v4(n: IpNet) -> Option<Ipv4Net> {
    match n {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

fn as_v6(n: IpNet) -> Option<Ipv6Net> {
    match n {
        IpNet::V6(n) => Some(n),
        IpNet::V4(_) => None,
    }
}

type Entries<N> = Vec<Tagged<N>>;

fn inline_entries(policy: &Policy) -> (Entries<Ipv4Net>, Entries<Ipv6Net>) {
    let (mut b4, mut b6) = (Vec::new(), Vec::new());
    for p in &policy.blocklist {
        match p.value {
            IpNet::V4(net) => b4.push(Tagged {
                net,
                feed: 0,
                line: p.line,
            }),
            IpNet::V6(net) => b6.push(Tagged {
                net,
                feed: 0,
                line: p.line,
            }),
        }
    }
    (b4, b6)
}

/// Append a feed's entries with its id, carving the exceptions; returns how many were excepted.
fn add_feed<N: Prefix>(
    all: &mut Entries<N>,
    entries: Vec<Sourced<N>>,
    feed: FeedId,
    except: &[N],
) -> u64 {
    let mut tagged: Entries<N> = entries
        .into_iter()
        .map(|s| Tagged {
            net: s.net,
            feed,
            line: s.line,
        })
        .collect();
    let excepted = carve(&mut tagged, except);
    if all.is_empty() {
        *all = tagged;
    } else {
        all.append(&mut tagged);
    }
    excepted
}

/// Warn when a blocklist entry covers one of the office's own prefixes (lan, dedicated network,
/// shared systems): traffic to them would be dropped as `blocklist`. Typical cause: a feed with
/// bogons (10.0.0.0/8) — fix with `[blocklist] except`.
fn protected_warnings(
    policy: &Policy,
    b4: &Entries<Ipv4Net>,
    b6: &Entries<Ipv6Net>,
    warnings: &mut Vec<Warning>,
) {
    let mut protected: Vec<(&Located<IpNet>, String, &str)> = Vec::new();
    for zone in &policy.zones {
        for p in &zone.prefixes {
            let field = match zone.role {
                Role::Lan => "zones.lan.prefixes",
                Role::Dedicated => "zones.dedicated.prefixes",
                Role::Internet => "zones.internet.prefixes",
            };
            protected.push((p, format!("{} prefix", zone.role.as_str()), field));
        }
    }
    for system in &policy.systems {
        for p in &system.prefixes {
            protected.push((
                p,
                format!("shared system {:?}", system.name),
                "shared_system.prefixes",
            ));
        }
    }
    for (p, what, field) in protected {
        let hit = match p.value {
            IpNet::V4(n) => find_cover(b4, &n).map(|e| (IpNet::V4(e.net), e.feed, e.line)),
            IpNet::V6(n) => find_cover(b6, &n).map(|e| (IpNet::V6(e.net), e.feed, e.line)),
        };
        let Some((net, feed, line)) = hit else {
            continue;
        };
        let source = if feed == 0 {
            format!("the policy's [blocklist] (line {line})")
        } else {
            let f = &policy.feeds[feed as usize - 1];
            format!("feed {:?} ({}:{line})", f.name, f.rel_path)
        };
        warnings.push(Warning {
            path: policy.path.clone(),
            line: p.line,
            field: field.to_string(),
            message: format!(
                "{what} {} is blocked by {net} from {source}; traffic to it will be dropped — add an exception to [blocklist] except",
                p.value
            ),
        });
    }
}

/// The entry of a sorted, non-overlapping list that covers `p`, if any.
fn find_cover<'a, N: Prefix>(entries: &'a [Tagged<N>], p: &N) -> Option<&'a Tagged<N>> {
    let i = entries.partition_point(|e| e.net.first() <= p.first());
    let candidate = entries.get(i.checked_sub(1)?)?;
    candidate.net.covers(p).then_some(candidate)
}

/// The `PortRule`s of one allow rule for one address family.
fn rule_entries(protocol: Protocol, ports: &[(u16, u16)], ipv6: bool) -> Vec<PortRule> {
    let proto = protocol.number(ipv6);
    if ports.is_empty() {
        vec![PortRule::new(proto, 0, u16::MAX)]
    } else {
        ports
            .iter()
            .map(|&(lo, hi)| PortRule::new(proto, lo, hi))
            .collect()
    }
}

fn add_rules<N: Ord>(
    map: &mut BTreeMap<N, (Vec<PortRule>, u32)>,
    net: N,
    rules: Vec<PortRule>,
    line: u32,
) {
    let slot = map.entry(net).or_insert_with(|| (Vec::new(), line));
    slot.0.extend(rules);
    // Report against the last line that added rules to this source: that is where an admin exceeded
    // the limit.
    slot.1 = slot.1.max(line);
}

/// For every source prefix: its rules plus those of every covering source prefix, normalised.
fn fold_sources<N: Prefix>(
    policy: &Policy,
    system: &str,
    sources: &BTreeMap<N, (Vec<PortRule>, u32)>,
) -> Result<Vec<(N, Vec<PortRule>)>, PolicyError> {
    let mut out = Vec::with_capacity(sources.len());
    for (net, (rules, line)) in sources {
        let mut all = rules.clone();
        let mut line = *line;
        for (other, (more, other_line)) in sources {
            if other != net && other.covers(net) {
                all.extend_from_slice(more);
                line = line.max(*other_line);
            }
        }
        let all = normalise_rules(all);
        if all.len() > MAX_ALLOW_RULES {
            return Err(PolicyError::new(
                ErrorKind::Capacity,
                &policy.path,
                line,
                "shared_system.allow",
                format!(
                    "shared system {system:?} admits {} distinct protocol/port rules for source {net} (its own and those of covering sources); at most {MAX_ALLOW_RULES} fit — merge ports into ranges",
                    all.len()
                ),
            ));
        }
        out.push((*net, all));
    }
    Ok(out)
}

/// Sorted, deduplicated, overlapping/adjacent ranges of one protocol merged; an any-protocol rule
/// admits everything and replaces the rest. Membership (`PortRule::admits`) is unchanged.
pub fn normalise_rules(mut rules: Vec<PortRule>) -> Vec<PortRule> {
    if rules.iter().any(|r| r.proto == PortRule::ANY_PROTO) {
        return vec![PortRule::new(PortRule::ANY_PROTO, 0, u16::MAX)];
    }
    rules.sort_unstable();
    let mut out: Vec<PortRule> = Vec::with_capacity(rules.len());
    for r in rules {
        if let Some(last) = out.last_mut()
            && last.proto == r.proto
            && u32::from(r.port_lo) <= u32::from(last.port_hi) + 1
        {
            last.port_hi = last.port_hi.max(r.port_hi);
            continue;
        }
        out.push(r);
    }
    out
}

/// Refuse blocklists the data-path maps cannot hold, before building the image (and before the
/// loader would fail half way). Blocklists grow from feeds: the error names the last feed.
fn check_blocklist_capacity(
    policy: &Policy,
    b4: &Entries<Ipv4Net>,
    b6: &Entries<Ipv6Net>,
) -> Result<(), PolicyError> {
    let exact4 = b4.iter().filter(|e| e.net.prefix_len() == 32).count();
    let exact6 = b6.iter().filter(|e| e.net.prefix_len() == 128).count();
    let limits = [
        ("block4_exact", exact4, BLOCK4_EXACT_PER_SLOT),
        ("block4_prefixes", b4.len() - exact4, BLOCK4_LPM_PER_SLOT),
        ("block6_exact", exact6, BLOCK6_EXACT_PER_SLOT),
        ("block6_prefixes", b6.len() - exact6, BLOCK6_LPM_PER_SLOT),
    ];
    let (line, field) = policy
        .feeds
        .last()
        .map_or((1, "blocklist.prefixes"), |f| (f.line, "feed.path"));
    check_limits(policy, &limits, line, field)
}

/// Refuse sections beyond the maps' room (thousands of hand-written prefixes; the blocklists were
/// checked against the same capacities before the image was built).
fn check_capacity(policy: &Policy, image: &MapImage) -> Result<(), PolicyError> {
    let limits: Vec<_> = image
        .sections()
        .iter()
        .map(|s| (s.name, s.len, s.capacity))
        .collect();
    check_limits(policy, &limits, 1, "policy")
}

fn check_limits(
    policy: &Policy,
    limits: &[(&str, usize, u32)],
    line: u32,
    field: &str,
) -> Result<(), PolicyError> {
    for &(section, len, cap) in limits {
        if len > cap as usize {
            return Err(PolicyError::new(
                ErrorKind::Capacity,
                &policy.path,
                line,
                field,
                format!(
                    "the policy needs {len} {section} entries; the data path holds {cap} per policy"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    #[test]
    fn rules_normalise() {
        let r = |p, lo, hi| PortRule::new(p, lo, hi);
        assert_eq!(
            normalise_rules(vec![
                r(6, 443, 443),
                r(6, 80, 80),
                r(6, 81, 90),
                r(6, 85, 85),
                r(17, 53, 53),
                r(6, 443, 443)
            ]),
            vec![r(6, 80, 90), r(6, 443, 443), r(17, 53, 53)]
        );
        assert_eq!(
            normalise_rules(vec![r(6, 1, 2), r(0, 0, 65535)]),
            vec![r(0, 0, 65535)]
        );
        assert_eq!(
            normalise_rules(vec![r(6, 0, 65535), r(6, 65535, 65535)]),
            vec![r(6, 0, 65535)]
        );
    }
}
