//! The map image: a compiled policy as plain data, exactly what the data-path maps will hold for one
//! generation slot. The loader writes it into the maps, the reference model evaluates it, `diff`
//! compares two of them. It knows nothing of files, TOML or aya.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use gateway_common::values::{DomainValue, PortRule};
use ipnet::{Ipv4Net, Ipv6Net};
use sha2::{Digest, Sha256};

/// Index of a feed in [`MapImage::feeds`]; the value of every blocklist entry.
pub type FeedId = u32;
/// Index of a shared system in [`MapImage::systems`]; the value of the shared-system maps.
pub type SystemId = u32;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapImage {
    /// Feeds (and the policy's inline blocklist) in id order, for attribution of blocklist hits.
    pub feeds: Vec<FeedInfo>,
    /// Shared systems in id order.
    pub systems: Vec<SystemInfo>,

    /// Blocked exact addresses (/32, /128) → feed; not covered by any prefix below (deduplicated).
    pub block4_exact: BTreeMap<Ipv4Addr, FeedId>,
    pub block6_exact: BTreeMap<Ipv6Addr, FeedId>,
    /// Blocked prefixes → feed; no prefix covers another (overlaps merged into the covering one).
    pub block4_prefixes: BTreeMap<Ipv4Net, FeedId>,
    pub block6_prefixes: BTreeMap<Ipv6Net, FeedId>,

    /// Isolated (R11) host prefixes.
    pub isolated4: BTreeSet<Ipv4Net>,
    pub isolated6: BTreeSet<Ipv6Net>,

    /// Shared-system destination prefixes → system.
    pub shared4: BTreeMap<Ipv4Net, SystemId>,
    pub shared6: BTreeMap<Ipv6Net, SystemId>,

    /// Union of shared-system and dedicated-network prefixes → `GOVNET_SHARED` / `GOVNET_DEDICATED`
    /// (gateway_common::values); used for source checks on the dedicated and internet ports and for
    /// isolated hosts.
    pub govnet4: BTreeMap<Ipv4Net, u32>,
    pub govnet6: BTreeMap<Ipv6Net, u32>,

    /// (system, source prefix) → the rules admitted for that source. The compiler has already folded
    /// in the rules of every shorter source prefix of the same system that covers this one, so the
    /// longest match alone decides. At most `MAX_ALLOW_RULES` rules per entry, sorted, deduplicated.
    pub allow4: BTreeMap<(SystemId, Ipv4Net), Vec<PortRule>>,
    pub allow6: BTreeMap<(SystemId, Ipv6Net), Vec<PortRule>>,

    /// `SETTING_*` bits of gateway_common::values.
    pub settings_flags: u32,

    /// Drop events per (source, reason) and window; the data path counts the rest as suppressed.
    pub alert_limit: AlertLimit,

    /// Domain feeds in id order (the `feed` of a [`DomainValue`], the rule of a `domain` verdict).
    pub domain_feeds: Vec<FeedInfo>,
    /// Listed names (issue 6): `gateway_common::dname` hash of the name (with [`Self::domain_seed`])
    /// → what it blocks or excepts and which domain feed said so.
    pub domains: BTreeMap<u64, DomainValue>,
    /// The name-hash seed the compiler hashed with; the data path and the reference model hash
    /// queries with it. 0 for now. `gateway_common::dname` explains why it should become a secret
    /// per box or per load: FNV-1a is invertible, so whoever knows the seed can craft a sub-name of a
    /// zone they control that hashes to a listed *exception* and evades a block (a collision with a
    /// *block* entry only blocks the attacker). Random collisions are negligible (≈ 5·10⁻¹⁴ per
    /// lookup for a million names) and a collision inside the set refuses the policy.
    pub domain_seed: u64,
    /// `[domains] action = "sinkhole"`: what A/AAAA answers for blocked names carry (issue 6).
    pub sinkhole: Sinkhole,
    /// TCP ports whose TLS ClientHello SNI is judged (`[domains] sni_ports`; 0 = unused).
    pub sni_ports: [u16; gateway_common::learn::MAX_SNI_PORTS],
    /// Cap on a learnt blocked address's lifetime in seconds (`[domains] learn_ttl_max_secs`);
    /// 0 = no learning.
    pub learn_ttl_max_secs: u32,
}

/// The answers of `[domains] action = "sinkhole"`; a family without an address gets NXDOMAIN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sinkhole {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// Seconds.
    pub ttl: u32,
}

/// The drop-event rate limit the data path applies (written into the slot's `Settings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertLimit {
    /// Events per window and (source, reason); 0 sends none.
    pub burst: u32,
    /// Window length in milliseconds; 0 = no limit.
    pub window_ms: u32,
}

impl Default for AlertLimit {
    fn default() -> Self {
        AlertLimit {
            burst: gateway_common::values::ALERT_BURST_DEFAULT,
            window_ms: gateway_common::values::ALERT_WINDOW_MS_DEFAULT,
        }
    }
}

/// One section of an image (see [`MapImage::sections`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// The image field, as summaries and diffs name it.
    pub name: &'static str,
    /// The data-path map it is written to.
    pub map: &'static str,
    pub len: usize,
    /// Entries one generation slot of the map holds.
    pub capacity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedInfo {
    pub name: String,
    /// Entries this feed contributed to the image after deduplication.
    pub entries: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemInfo {
    pub name: String,
}

impl MapImage {
    /// Every section with the map it is written to and the room one generation slot has there:
    /// the one table the compiler's summary and capacity checks and the loader's checks read.
    pub fn sections(&self) -> [Section; 13] {
        use gateway_common::maps as m;
        let s = |name, map, len, capacity| Section {
            name,
            map,
            len,
            capacity,
        };
        [
            s(
                "block4_exact",
                m::BLOCK4_EXACT,
                self.block4_exact.len(),
                m::BLOCK4_EXACT_PER_SLOT,
            ),
            s(
                "block6_exact",
                m::BLOCK6_EXACT,
                self.block6_exact.len(),
                m::BLOCK6_EXACT_PER_SLOT,
            ),
            s(
                "block4_prefixes",
                m::BLOCK4_LPM,
                self.block4_prefixes.len(),
                m::BLOCK4_LPM_PER_SLOT,
            ),
            s(
                "block6_prefixes",
                m::BLOCK6_LPM,
                self.block6_prefixes.len(),
                m::BLOCK6_LPM_PER_SLOT,
            ),
            s(
                "isolated4",
                m::ISOLATED4,
                self.isolated4.len(),
                m::SMALL_PER_SLOT,
            ),
            s(
                "isolated6",
                m::ISOLATED6,
                self.isolated6.len(),
                m::SMALL_PER_SLOT,
            ),
            s("shared4", m::SHARED4, self.shared4.len(), m::SMALL_PER_SLOT),
            s("shared6", m::SHARED6, self.shared6.len(), m::SMALL_PER_SLOT),
            s("govnet4", m::GOVNET4, self.govnet4.len(), m::SMALL_PER_SLOT),
            s("govnet6", m::GOVNET6, self.govnet6.len(), m::SMALL_PER_SLOT),
            s("allow4", m::ALLOW4, self.allow4.len(), m::SMALL_PER_SLOT),
            s("allow6", m::ALLOW6, self.allow6.len(), m::SMALL_PER_SLOT),
            s(
                "domains",
                m::DOMAINS,
                self.domains.len(),
                m::DOMAINS_PER_SLOT,
            ),
        ]
    }

    /// The first section that does not fit its map, if any.
    pub fn overflow(&self) -> Option<Section> {
        self.sections()
            .into_iter()
            .find(|s| s.len > s.capacity as usize)
    }

    /// Total number of map entries the image writes into one slot.
    pub fn entry_count(&self) -> usize {
        self.sections().iter().map(|s| s.len).sum()
    }

    /// SHA-256 over a canonical binary encoding (sections tagged, entries in BTree order), shown by
    /// `status` and stored in the maps. Names are included: renaming a feed changes the hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        put_len(&mut h, b"feeds", self.feeds.len());
        put_len(&mut h, b"systems", self.systems.len());
        for f in &self.feeds {
            put_str(&mut h, &f.name);
        }
        for s in &self.systems {
            put_str(&mut h, &s.name);
        }
        put_len(&mut h, b"b4x", self.block4_exact.len());
        for (a, v) in &self.block4_exact {
            h.update(a.octets());
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"b6x", self.block6_exact.len());
        for (a, v) in &self.block6_exact {
            h.update(a.octets());
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"b4p", self.block4_prefixes.len());
        for (n, v) in &self.block4_prefixes {
            put_net4(&mut h, n);
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"b6p", self.block6_prefixes.len());
        for (n, v) in &self.block6_prefixes {
            put_net6(&mut h, n);
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"i4", self.isolated4.len());
        self.isolated4.iter().for_each(|n| put_net4(&mut h, n));
        put_len(&mut h, b"i6", self.isolated6.len());
        self.isolated6.iter().for_each(|n| put_net6(&mut h, n));
        put_len(&mut h, b"s4", self.shared4.len());
        for (n, v) in &self.shared4 {
            put_net4(&mut h, n);
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"s6", self.shared6.len());
        for (n, v) in &self.shared6 {
            put_net6(&mut h, n);
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"g4", self.govnet4.len());
        for (n, v) in &self.govnet4 {
            put_net4(&mut h, n);
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"g6", self.govnet6.len());
        for (n, v) in &self.govnet6 {
            put_net6(&mut h, n);
            h.update(v.to_be_bytes());
        }
        put_len(&mut h, b"a4", self.allow4.len());
        for ((s, n), rules) in &self.allow4 {
            h.update(s.to_be_bytes());
            put_net4(&mut h, n);
            put_rules(&mut h, rules);
        }
        put_len(&mut h, b"a6", self.allow6.len());
        for ((s, n), rules) in &self.allow6 {
            h.update(s.to_be_bytes());
            put_net6(&mut h, n);
            put_rules(&mut h, rules);
        }
        h.update(self.settings_flags.to_be_bytes());
        h.update(b"alert");
        h.update(self.alert_limit.burst.to_be_bytes());
        h.update(self.alert_limit.window_ms.to_be_bytes());
        put_len(&mut h, b"df", self.domain_feeds.len());
        for f in &self.domain_feeds {
            put_str(&mut h, &f.name);
        }
        put_len(&mut h, b"dn", self.domains.len());
        for (k, v) in &self.domains {
            h.update(k.to_be_bytes());
            h.update([v.flags]);
            h.update(v.feed.to_be_bytes());
        }
        h.update(b"dseed");
        h.update(self.domain_seed.to_be_bytes());
        // Only a sinkhole policy hashes these, so other images keep the hash they had.
        if self.sinkhole != Sinkhole::default() {
            h.update(b"sink");
            h.update(self.sinkhole.v4.map_or([0; 4], |a| a.octets()));
            h.update(self.sinkhole.v6.map_or([0; 16], |a| a.octets()));
            h.update(self.sinkhole.ttl.to_be_bytes());
        }
        h.update(b"sni");
        for p in self.sni_ports {
            h.update(p.to_be_bytes());
        }
        h.update(b"learn");
        h.update(self.learn_ttl_max_secs.to_be_bytes());
        h.finalize().into()
    }
}

fn put_len(h: &mut Sha256, tag: &[u8], len: usize) {
    h.update(tag);
    h.update((len as u64).to_be_bytes());
}

fn put_str(h: &mut Sha256, s: &str) {
    put_len(h, b"s", s.len());
    h.update(s.as_bytes());
}

fn put_net4(h: &mut Sha256, n: &Ipv4Net) {
    h.update(n.addr().octets());
    h.update([n.prefix_len()]);
}

fn put_net6(h: &mut Sha256, n: &Ipv6Net) {
    h.update(n.addr().octets());
    h.update([n.prefix_len()]);
}

fn put_rules(h: &mut Sha256, rules: &[PortRule]) {
    put_len(h, b"r", rules.len());
    for r in rules {
        h.update([r.proto]);
        h.update(r.port_lo.to_be_bytes());
        h.update(r.port_hi.to_be_bytes());
    }
}

/// Lowercase hex of a hash, for display.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alert_limit_is_part_of_the_hash() {
        let base = MapImage::default();
        assert_eq!(
            base.alert_limit,
            AlertLimit {
                burst: 20,
                window_ms: 1000
            }
        );
        let burst = MapImage {
            alert_limit: AlertLimit {
                burst: 21,
                ..base.alert_limit
            },
            ..MapImage::default()
        };
        let window = MapImage {
            alert_limit: AlertLimit {
                window_ms: 999,
                ..base.alert_limit
            },
            ..MapImage::default()
        };
        let hashes = [base.hash(), burst.hash(), window.hash()];
        assert_ne!(hashes[0], hashes[1]);
        assert_ne!(hashes[0], hashes[2]);
        assert_ne!(hashes[1], hashes[2]);
    }

    #[test]
    fn domains_their_feeds_and_the_seed_are_part_of_the_hash() {
        let base = MapImage::default();
        let listed = MapImage {
            domains: BTreeMap::from([(7, DomainValue::new(3, 0))]),
            ..MapImage::default()
        };
        let other_flags = MapImage {
            domains: BTreeMap::from([(7, DomainValue::new(1, 0))]),
            ..MapImage::default()
        };
        let other_feed = MapImage {
            domains: BTreeMap::from([(7, DomainValue::new(3, 1))]),
            ..MapImage::default()
        };
        let named = MapImage {
            domain_feeds: vec![FeedInfo {
                name: "x".into(),
                entries: 0,
            }],
            ..MapImage::default()
        };
        let seeded = MapImage {
            domain_seed: 1,
            ..MapImage::default()
        };
        let hashes = [
            base.hash(),
            listed.hash(),
            other_flags.hash(),
            other_feed.hash(),
            named.hash(),
            seeded.hash(),
        ];
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
