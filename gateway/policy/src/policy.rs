//! The policy file: TOML schema and validation.
//!
//! The format is written for the office's network admin, not for the data path:
//!
//! ```toml
//! [policy]
//! name = "ward-office"
//! version = "2026.07.1"                 # string or integer, free form
//! description = "…"                     # optional
//!
//! [zones.lan]                           # one zone per role: lan, dedicated, internet
//! ports = ["lan0"]                      # hardware-profile ports; each must have this role there
//! prefixes = ["10.10.0.0/24", "fd00:10::/64"]
//!
//! [zones.dedicated]
//! ports = ["ded0"]
//! prefixes = ["10.200.0.0/16"]          # the dedicated network (sources admitted on that port)
//!
//! [zones.internet]
//! ports = ["inet0"]                     # no prefixes: the Internet is everything else
//!
//! [[shared_system]]                     # R1/R4: reached only via the dedicated port
//! name = "national-population-db-api"
//! prefixes = ["10.200.1.10/32"]
//! [[shared_system.allow]]               # who may reach it, and on what
//! from = ["10.10.0.0/24"]
//! protocol = "tcp"                      # tcp | udp | icmp | any
//! ports = [443, "8000-8080"]            # tcp/udp only, required there ("0-65535" = every port)
//!
//! [[isolated]]                          # R11: may reach only the dedicated network
//! name = "state-secret"
//! hosts = ["10.10.0.3/32"]
//!
//! [blocklist]                           # R2: the policy's own blocklist (feed "policy", id 0)
//! prefixes = ["203.0.113.66/32"]
//! except = ["10.0.0.0/8"]               # carved out of every feed (never out of `prefixes`)
//!
//! [[feed]]
//! name = "spamhaus-drop"
//! path = "feeds/spamhaus_drop.netset"   # relative to this file's directory, no ".."
//! format = "netset"                     # plain | netset | ipset | spamhaus | json
//!
//! [[feed]]                              # a remote feed: see crate::remote
//! name = "soc-indicators"
//! url = "https://feeds.soc.example/indicators.json"   # exclusive with `path`
//! format = "json"
//! refresh_secs = 3600                   # optional: refresh_secs, max_bytes, ca, min_entries
//!
//! [defaults]
//! fragments = "inspect"                 # inspect | drop (non-first fragments)
//!
//! [[domain_feed]]                       # issue 6: DNS queries for listed names are blocked
//! name = "ransomware-domains"
//! path = "feeds/ransomware.txt"         # same path rules as [[feed]]
//! format = "hosts"                      # hosts | list | rpz
//! exact_only = false                    # optional: bare names block only themselves, not sub-names
//!
//! [domains]
//! action = "nxdomain"                   # nxdomain (answer in place) | sinkhole | drop
//! malformed = "drop"                    # drop | pass: a DNS query whose question cannot be walked
//!                                       #   (also a malformed or split TLS ClientHello)
//! sinkhole_v4 = "192.0.2.53"            # action = "sinkhole": the A answer (and/or sinkhole_v6,
//! sinkhole_v6 = "2001:db8::53"          #   the AAAA answer; a family without one gets NXDOMAIN)
//! sinkhole_ttl = 60                     # optional: TTL of a sinkhole answer, seconds
//! sni_ports = [443]                     # TCP ports whose ClientHello SNI is judged (≤ 4; [] = off)
//! learn_ttl_max_secs = 300              # cap on a learnt blocked address's life (0 = no learning)
//! ```
//!
//! Every table refuses unknown keys (a typo must not silently drop a rule). Prefixes written in the
//! policy must be exact networks: `10.10.0.1/24` is an error, because in a hand-written policy host
//! bits usually mean a wrong length, and guessing which was meant could open or close the wrong range.
//! (Feeds are normalised instead; see [`crate::feeds`].)

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use gateway_common::Role;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::domains::DomainFormat;
use crate::error::{PolicyError, SourceText, Warning, read_file, toml_error};
use crate::feeds::FeedFormat;
use crate::prefixes::{Prefix, parse_net};
use crate::profile::{Profile, parse_role};
use gateway_common::learn::{LEARN_TTL_MAX_DEFAULT, MAX_SNI_PORTS, SNI_PORTS_DEFAULT};

// --- The validated policy ---------------------------------------------------------------------------

/// A value with the 1-based line of the policy it was written on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: u32,
}

/// A policy that passed validation against a hardware profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The policy file (as given); feed paths are resolved against its directory.
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// One zone per role, in role order (lan, dedicated, internet).
    pub zones: Vec<Zone>,
    /// Shared systems in file order; the index is the system id.
    pub systems: Vec<SharedSystem>,
    pub isolated: Vec<IsolatedClass>,
    /// Feeds in file order; feed id = index + 1 (id 0 is the inline blocklist).
    pub feeds: Vec<FeedRef>,
    /// `[blocklist] prefixes`.
    pub blocklist: Vec<Located<IpNet>>,
    /// `[blocklist] except`.
    pub except: Vec<Located<IpNet>>,
    /// `[defaults] fragments = "drop"`.
    pub drop_fragments: bool,
    /// `[telemetry]`: flow export, alerts and metrics for the SOC.
    pub telemetry: crate::telemetry::Telemetry,
    /// `[management]`: who reaches the management plane (rendered into nftables by gatewayd).
    pub management: crate::management::Management,
    /// `[[domain_feed]]` in file order; domain feed id = index.
    pub domain_feeds: Vec<DomainFeedRef>,
    /// `[domains]`.
    pub domains: DomainSettings,
}

impl Policy {
    pub fn zone(&self, role: Role) -> Option<&Zone> {
        self.zones.iter().find(|z| z.role == role)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub role: Role,
    pub line: u32,
    pub ports: Vec<String>,
    pub prefixes: Vec<Located<IpNet>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedSystem {
    pub name: String,
    pub description: Option<String>,
    pub line: u32,
    pub prefixes: Vec<Located<IpNet>>,
    pub allow: Vec<AllowRule>,
}

/// Protocols an allow rule can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP towards IPv4 destinations, ICMPv6 towards IPv6 ones.
    Icmp,
    Any,
}

impl Protocol {
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }

    /// IP protocol number in a `PortRule` (0 = any) for an IPv4 or IPv6 flow.
    pub const fn number(self, ipv6: bool) -> u8 {
        use gateway_common::maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Icmp if ipv6 => IPPROTO_ICMPV6,
            Protocol::Icmp => IPPROTO_ICMP,
            Protocol::Any => gateway_common::values::PortRule::ANY_PROTO,
        }
    }

    fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    /// Line of the rule's `protocol`.
    pub line: u32,
    pub description: Option<String>,
    pub from: Vec<Located<IpNet>>,
    pub protocol: Protocol,
    /// Inclusive port ranges (tcp/udp); empty for icmp/any, which cover everything of the protocol.
    pub ports: Vec<(u16, u16)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsolatedClass {
    pub name: String,
    pub description: Option<String>,
    pub line: u32,
    pub hosts: Vec<Located<IpNet>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRef {
    pub name: String,
    pub description: Option<String>,
    /// Line of the feed's `path` (or `url`).
    pub line: u32,
    /// As written in the policy (relative), for summaries that must not depend on where the
    /// policy directory lives. The URL for a remote feed.
    pub rel_path: String,
    /// Resolved against the policy file's directory (empty for a remote feed).
    pub path: PathBuf,
    pub format: FeedFormat,
    /// `url = …`: fetched by the daemon; what it contributes is its last good copy.
    pub remote: Option<crate::remote::RemoteFeed>,
}

/// A `[[domain_feed]]`: a file of DNS names whose queries are blocked (issue 6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainFeedRef {
    pub name: String,
    pub description: Option<String>,
    /// Line of the feed's `path`.
    pub line: u32,
    /// As written in the policy (relative).
    pub rel_path: String,
    /// Resolved against the policy file's directory.
    pub path: PathBuf,
    pub format: DomainFormat,
    /// `exact_only = true`: a bare name of a hosts file or list blocks only itself (RPZ zones say
    /// their scope themselves and ignore it).
    pub exact_only: bool,
}

/// What the data path does with a DNS query for a blocked name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DomainAction {
    /// Answer NXDOMAIN in place: the client learns at once that the name does not resolve instead
    /// of retrying until it times out (the default).
    #[default]
    Nxdomain,
    /// Drop the query silently.
    Drop,
    /// Answer A / AAAA queries (class IN) with `sinkhole_v4` / `sinkhole_v6` (one record, TTL
    /// `sinkhole_ttl`), every other query with NXDOMAIN: clients that connect anyway reach the
    /// sinkhole, where the SOC can see who they are.
    Sinkhole,
}

impl DomainAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            DomainAction::Nxdomain => "nxdomain",
            DomainAction::Drop => "drop",
            DomainAction::Sinkhole => "sinkhole",
        }
    }
}

/// `[domains]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainSettings {
    pub action: DomainAction,
    /// `malformed = "pass"`: a DNS query whose question cannot be walked passes (default: drops as
    /// `malformed`, so a compression pointer cannot smuggle a blocked name past the check).
    pub pass_malformed: bool,
    /// `sinkhole_v4`, `sinkhole_v6`: the answers of `action = "sinkhole"` (at least one is set
    /// with that action; a family without one gets NXDOMAIN).
    pub sinkhole_v4: Option<std::net::Ipv4Addr>,
    pub sinkhole_v6: Option<std::net::Ipv6Addr>,
    /// `sinkhole_ttl`: TTL in seconds of a sinkhole answer (default 60).
    pub sinkhole_ttl: u32,
    /// `sni_ports = [443, 8443]`: TCP ports whose TLS ClientHello server_name is judged against
    /// the same names (at most `MAX_SNI_PORTS`; `[]` turns SNI inspection off). Unused slots are 0.
    pub sni_ports: [u16; MAX_SNI_PORTS],
    /// `learn_ttl_max_secs = 300`: cap on how long an address answered for a blocked name stays
    /// blocked; 0 turns learning off.
    pub learn_ttl_max_secs: u32,
}

/// TTL of a sinkhole answer unless the policy says otherwise: short, so a client retries soon
/// after a name is taken off the list.
pub const SINKHOLE_TTL_DEFAULT: u32 = 60;

/// Longest accepted `learn_ttl_max_secs`: a day. Learnt entries are meant to be short-lived.
pub const LEARN_TTL_MAX_LIMIT: u32 = 86_400;

impl Default for DomainSettings {
    fn default() -> Self {
        DomainSettings {
            action: DomainAction::Nxdomain,
            pass_malformed: false,
            sinkhole_v4: None,
            sinkhole_v6: None,
            sinkhole_ttl: SINKHOLE_TTL_DEFAULT,
            sni_ports: SNI_PORTS_DEFAULT,
            learn_ttl_max_secs: LEARN_TTL_MAX_DEFAULT,
        }
    }
}

// --- The TOML schema --------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    policy: Spanned<RawMeta>,
    zones: BTreeMap<Spanned<String>, Spanned<RawZone>>,
    #[serde(default)]
    shared_system: Vec<RawSystem>,
    #[serde(default)]
    isolated: Vec<RawIsolated>,
    #[serde(default)]
    feed: Vec<RawFeed>,
    blocklist: Option<RawBlocklist>,
    defaults: Option<RawDefaults>,
    telemetry: Option<crate::telemetry::RawTelemetry>,
    management: Option<Spanned<crate::management::RawManagement>>,
    #[serde(default)]
    domain_feed: Vec<RawDomainFeed>,
    domains: Option<Spanned<RawDomains>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    name: Spanned<String>,
    version: Spanned<toml::Value>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    ports: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    prefixes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    allow: Vec<RawAllow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    from: Spanned<Vec<Spanned<String>>>,
    protocol: Spanned<String>,
    ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIsolated {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    hosts: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    path: Option<Spanned<String>>,
    format: Spanned<FeedFormat>,
    url: Option<Spanned<String>>,
    refresh_secs: Option<Spanned<i64>>,
    max_bytes: Option<Spanned<i64>>,
    ca: Option<Spanned<String>>,
    min_entries: Option<Spanned<i64>>,
    timeout_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomainFeed {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    path: Spanned<String>,
    format: Spanned<DomainFormat>,
    #[serde(default)]
    exact_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomains {
    action: Option<Spanned<String>>,
    malformed: Option<Spanned<String>>,
    sinkhole_v4: Option<Spanned<String>>,
    sinkhole_v6: Option<Spanned<String>>,
    sinkhole_ttl: Option<Spanned<i64>>,
    sni_ports: Option<Spanned<Vec<Spanned<i64>>>>,
    learn_ttl_max_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlocklist {
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    except: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    fragments: Option<Spanned<String>>,
}

// --- Parsing and validation -------------------------------------------------------------------------

/// Read a policy file and validate it against `profile`.
pub fn load_policy(path: &Path, profile: &Profile) -> Result<(Policy, Vec<Warning>), PolicyError> {
    let text = read_file(path, path, 1, "file")?;
    parse_policy(&text, path, profile)
}

/// Validate policy text against `profile`. `path` names the file in messages and is the base of
/// relative feed paths. Returns the policy and the warnings found on the way.
pub fn parse_policy(
    text: &str,
    path: &Path,
    profile: &Profile,
) -> Result<(Policy, Vec<Warning>), PolicyError> {
    let src = SourceText::new(path, text);
    let raw: RawPolicy = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| toml_error(&src, e))?;
    let mut v = Validator {
        src: &src,
        warnings: Vec::new(),
    };
    let policy = v.policy(raw, profile)?;
    Ok((policy, v.warnings))
}

struct Validator<'s, 't> {
    src: &'s SourceText<'t>,
    warnings: Vec<Warning>,
}

/// A validated prefix with where it came from, for overlap messages.
#[derive(Clone, Copy)]
struct Owned<'a> {
    net: IpNet,
    line: u32,
    what: &'a str,
}

impl Validator<'_, '_> {
    fn line(&self, span: &Range<usize>) -> u32 {
        self.src.line_of_span(span)
    }

    fn err(&self, span: &Range<usize>, field: &str, msg: impl Into<String>) -> PolicyError {
        self.src.invalid(span, field, msg)
    }

    fn warn(&mut self, line: u32, field: &str, msg: impl Into<String>) {
        self.warnings.push(Warning {
            path: self.src.path.to_path_buf(),
            line,
            field: field.to_string(),
            message: msg.into(),
        });
    }

    fn policy(&mut self, raw: RawPolicy, profile: &Profile) -> Result<Policy, PolicyError> {
        let header = raw.policy.span();
        let meta = raw.policy.into_inner();
        self.name(&meta.name, "policy.name")?;
        let version = match meta.version.get_ref() {
            toml::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            toml::Value::Integer(i) => i.to_string(),
            _ => {
                return Err(self.err(
                    &meta.version.span(),
                    "policy.version",
                    "expected a non-empty string or an integer",
                ));
            }
        };

        let zones = self.zones(raw.zones, &header, profile)?;
        self.check_zone_overlaps(&zones)?;
        let systems = self.systems(raw.shared_system, &zones)?;
        let isolated = self.isolated(raw.isolated, &zones)?;
        let feeds = self.feeds(raw.feed)?;
        let domain_feeds = self.domain_feeds(raw.domain_feed, &feeds)?;
        let domains = self.domain_settings(raw.domains, &domain_feeds)?;
        let (blocklist, except) = match raw.blocklist {
            Some(b) => (
                self.prefix_list(&b.prefixes, "blocklist.prefixes")?,
                self.prefix_list(&b.except, "blocklist.except")?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let drop_fragments = match raw.defaults.and_then(|d| d.fragments) {
            None => false,
            Some(f) => {
                match f.get_ref().as_str() {
                    "inspect" => false,
                    "drop" => true,
                    other => {
                        return Err(self.err(
                        &f.span(),
                        "defaults.fragments",
                        format!("unknown fragment handling {other:?}; expected \"inspect\" or \"drop\""),
                    ));
                    }
                }
            }
        };
        let base = self.src.path.parent().unwrap_or(Path::new("."));
        let telemetry = crate::telemetry::validate(self.src, raw.telemetry, base)?;
        let management = crate::management::validate(
            self.src,
            raw.management,
            &zones,
            telemetry.metrics.as_ref(),
        )?;
        Ok(Policy {
            path: self.src.path.to_path_buf(),
            name: meta.name.into_inner(),
            version,
            description: meta.description,
            zones,
            systems,
            isolated,
            feeds,
            blocklist,
            except,
            drop_fragments,
            telemetry,
            management,
            domain_feeds,
            domains,
        })
    }

    fn name(&self, name: &Spanned<String>, field: &str) -> Result<(), PolicyError> {
        crate::profile::check_name(self.src, name, field)
    }

    /// A prefix written in the policy: must be an exact network.
    fn prefix(&self, s: &Spanned<String>, field: &str) -> Result<Located<IpNet>, PolicyError> {
        let text = s.get_ref().trim();
        let p = parse_net(text).map_err(|e| {
            self.err(
                &s.span(),
                field,
                format!("{:?} {}", s.get_ref(), e.describe()),
            )
        })?;
        if p.host_bits {
            return Err(self.err(
                &s.span(),
                field,
                format!(
                    "{text:?} has host bits set; the network is {} (or give the host as /{})",
                    p.net,
                    p.net.max_prefix_len()
                ),
            ));
        }
        Ok(Located {
            value: p.net,
            line: self.line(&s.span()),
        })
    }

    fn prefix_list(
        &self,
        list: &[Spanned<String>],
        field: &str,
    ) -> Result<Vec<Located<IpNet>>, PolicyError> {
        list.iter().map(|s| self.prefix(s, field)).collect()
    }

    fn zones(
        &mut self,
        raw: BTreeMap<Spanned<String>, Spanned<RawZone>>,
        header: &Range<usize>,
        profile: &Profile,
    ) -> Result<Vec<Zone>, PolicyError> {
        let mut zones: Vec<Zone> = Vec::new();
        for (key, zone) in raw {
            let role = parse_role(key.get_ref()).ok_or_else(|| {
                self.err(
                    &key.span(),
                    &format!("zones.{}", key.get_ref()),
                    format!(
                        "unknown role {:?}; expected \"lan\", \"dedicated\" or \"internet\"",
                        key.get_ref()
                    ),
                )
            })?;
            let zone_line = self.line(&key.span());
            let z = zone.into_inner();
            let field = format!("zones.{}.ports", role.as_str());
            if z.ports.get_ref().is_empty() {
                return Err(self.err(&z.ports.span(), &field, "a zone needs at least one port"));
            }
            let mut ports: Vec<String> = Vec::new();
            for p in z.ports.get_ref() {
                let name = p.get_ref();
                let Some(spec) = profile.port(name) else {
                    let known: Vec<&str> = profile.ports.iter().map(|p| p.name.as_str()).collect();
                    return Err(self.err(
                        &p.span(),
                        &field,
                        format!(
                            "wrong port: profile {:?} has no port {name:?} (it has {})",
                            profile.name,
                            known.join(", ")
                        ),
                    ));
                };
                if spec.role != role {
                    return Err(self.err(
                        &p.span(),
                        &field,
                        format!(
                            "wrong port: {name:?} has role {} in profile {:?}, not {}",
                            spec.role.as_str(),
                            profile.name,
                            role.as_str()
                        ),
                    ));
                }
                if ports.contains(name) {
                    return Err(self.err(
                        &p.span(),
                        &field,
                        format!("port {name:?} is listed twice"),
                    ));
                }
                ports.push(name.clone());
            }
            let pfield = format!("zones.{}.prefixes", role.as_str());
            if role == Role::Internet
                && let Some(first) = z.prefixes.first()
            {
                return Err(self.err(
                    &first.span(),
                    &pfield,
                    "the internet zone takes no prefixes: the Internet is every address not named elsewhere",
                ));
            }
            let prefixes = self.prefix_list(&z.prefixes, &pfield)?;
            for spec in profile.ports_with_role(role) {
                if !ports.contains(&spec.name) {
                    self.warn(
                        zone_line,
                        &field,
                        format!(
                            "profile {:?} port {:?} ({}) is not listed; it still gets the {} role",
                            profile.name,
                            spec.name,
                            spec.device,
                            role.as_str()
                        ),
                    );
                }
            }
            zones.push(Zone {
                role,
                line: zone_line,
                ports,
                prefixes,
            });
        }
        for role in Role::ALL {
            if !zones.iter().any(|z| z.role == role) {
                return Err(PolicyError::invalid(
                    self.src.path,
                    self.line(header),
                    format!("zones.{}", role.as_str()),
                    format!(
                        "no [zones.{}] section; every role needs a zone",
                        role.as_str()
                    ),
                ));
            }
        }
        zones.sort_by_key(|z| z.role);
        Ok(zones)
    }

    /// lan and dedicated prefixes must not overlap each other, nor themselves.
    fn check_zone_overlaps(&self, zones: &[Zone]) -> Result<(), PolicyError> {
        let mut seen: Vec<Owned<'_>> = Vec::new();
        for z in zones {
            for p in &z.prefixes {
                let field = format!("zones.{}.prefixes", z.role.as_str());
                let what = z.role.as_str();
                self.no_overlap(
                    &seen,
                    Owned {
                        net: p.value,
                        line: p.line,
                        what,
                    },
                    &field,
                    |o| format!("{} prefix {}", o.what, o.net),
                )?;
                seen.push(Owned {
                    net: p.value,
                    line: p.line,
                    what,
                });
            }
        }
        Ok(())
    }

    fn no_overlap(
        &self,
        seen: &[Owned<'_>],
        new: Owned<'_>,
        field: &str,
        describe: impl Fn(&Owned<'_>) -> String,
    ) -> Result<(), PolicyError> {
        if let Some(o) = seen.iter().find(|o| nets_overlap(&o.net, &new.net)) {
            return Err(PolicyError::invalid(
                self.src.path,
                new.line,
                field,
                format!("{} overlaps {} (line {})", new.net, describe(o), o.line),
            ));
        }
        Ok(())
    }

    fn systems(
        &mut self,
        raw: Vec<RawSystem>,
        zones: &[Zone],
    ) -> Result<Vec<SharedSystem>, PolicyError> {
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut seen: Vec<Owned<'_>> = Vec::new();
        let lan: Vec<Located<IpNet>> = zones
            .iter()
            .filter(|z| z.role == Role::Lan)
            .flat_map(|z| z.prefixes.clone())
            .collect();
        let mut systems = Vec::with_capacity(raw.len());
        for rs in &raw {
            self.name(&rs.name, "shared_system.name")?;
            let line = self.line(&rs.name.span());
            if let Some(first) = names.insert(rs.name.get_ref().clone(), line) {
                return Err(self.err(
                    &rs.name.span(),
                    "shared_system.name",
                    format!(
                        "duplicate shared system name {:?} (first at line {first})",
                        rs.name.get_ref()
                    ),
                ));
            }
            if rs.prefixes.get_ref().is_empty() {
                return Err(self.err(
                    &rs.prefixes.span(),
                    "shared_system.prefixes",
                    "a shared system needs prefixes",
                ));
            }
            let prefixes = self.prefix_list(rs.prefixes.get_ref(), "shared_system.prefixes")?;
            for p in &prefixes {
                let new = Owned {
                    net: p.value,
                    line: p.line,
                    what: rs.name.get_ref(),
                };
                self.no_overlap(&seen, new, "shared_system.prefixes", |o| {
                    format!("{} of shared system {:?}", o.net, o.what)
                })?;
                if let Some(l) = lan.iter().find(|l| nets_overlap(&l.value, &p.value)) {
                    return Err(PolicyError::invalid(
                        self.src.path,
                        p.line,
                        "shared_system.prefixes",
                        format!(
                            "{} overlaps lan prefix {} (line {}); a shared system lies beyond the dedicated port",
                            p.value, l.value, l.line
                        ),
                    ));
                }
                seen.push(new);
            }
            let has4 = prefixes.iter().any(|p| p.value.addr().is_ipv4());
            let has6 = prefixes.iter().any(|p| p.value.addr().is_ipv6());
            let mut allow = Vec::with_capacity(rs.allow.len());
            for ra in &rs.allow {
                let rule = self.allow_rule(ra)?;
                for f in &rule.from {
                    let v4 = f.value.addr().is_ipv4();
                    if (v4 && !has4) || (!v4 && !has6) {
                        self.warn(
                            f.line,
                            "shared_system.allow.from",
                            format!(
                                "{} is IPv{} but shared system {:?} has no IPv{} prefixes; it admits nothing",
                                f.value,
                                if v4 { 4 } else { 6 },
                                rs.name.get_ref(),
                                if v4 { 4 } else { 6 }
                            ),
                        );
                    }
                }
                allow.push(rule);
            }
            if allow.is_empty() {
                self.warn(
                    line,
                    "shared_system.allow",
                    format!("shared system {:?} has no allow rules: every packet to it is dropped (not_allowed)", rs.name.get_ref()),
                );
            }
            systems.push(SharedSystem {
                name: rs.name.get_ref().clone(),
                description: rs.description.clone(),
                line,
                prefixes,
                allow,
            });
        }
        Ok(systems)
    }

    fn allow_rule(&self, ra: &RawAllow) -> Result<AllowRule, PolicyError> {
        if ra.from.get_ref().is_empty() {
            return Err(self.err(
                &ra.from.span(),
                "shared_system.allow.from",
                "an allow rule needs at least one source prefix",
            ));
        }
        let from = self.prefix_list(ra.from.get_ref(), "shared_system.allow.from")?;
        let protocol = match ra.protocol.get_ref().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "any" => Protocol::Any,
            other => {
                return Err(self.err(
                    &ra.protocol.span(),
                    "shared_system.allow.protocol",
                    format!(
                        "unknown protocol {other:?}; expected \"tcp\", \"udp\", \"icmp\" or \"any\""
                    ),
                ));
            }
        };
        let mut ports = Vec::new();
        match (&ra.ports, protocol.has_ports()) {
            (Some(list), false) => {
                return Err(self.err(
                    &list.span(),
                    "shared_system.allow.ports",
                    format!("{} rules take no ports", protocol.as_str()),
                ));
            }
            (None, true) => {
                return Err(self.err(
                    &ra.protocol.span(),
                    "shared_system.allow.ports",
                    format!(
                        "{} rules need ports (write \"0-65535\" for every port)",
                        protocol.as_str()
                    ),
                ));
            }
            (Some(list), true) => {
                if list.get_ref().is_empty() {
                    return Err(self.err(
                        &list.span(),
                        "shared_system.allow.ports",
                        "empty port list",
                    ));
                }
                for item in list.get_ref() {
                    ports.push(self.port_item(item)?);
                }
            }
            (None, false) => {}
        }
        Ok(AllowRule {
            line: self.line(&ra.protocol.span()),
            description: ra.description.clone(),
            from,
            protocol,
            ports,
        })
    }

    fn port_item(&self, item: &Spanned<toml::Value>) -> Result<(u16, u16), PolicyError> {
        const FIELD: &str = "shared_system.allow.ports";
        let bad = |msg: String| self.err(&item.span(), FIELD, msg);
        match item.get_ref() {
            toml::Value::Integer(i) => {
                let p =
                    u16::try_from(*i).map_err(|_| bad(format!("{i} is not a port (0-65535)")))?;
                Ok((p, p))
            }
            toml::Value::String(s) => {
                let num = |t: &str| -> Option<u16> {
                    let t = t.trim();
                    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    t.parse::<u16>().ok()
                };
                let (lo, hi) = match s.split_once('-') {
                    Some((a, b)) => (num(a), num(b)),
                    None => (num(s), num(s)),
                };
                match (lo, hi) {
                    (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
                    (Some(lo), Some(hi)) => Err(bad(format!(
                        "{s:?} is a reversed range; write \"{hi}-{lo}\""
                    ))),
                    _ => Err(bad(format!(
                        "{s:?} is not a port or \"lo-hi\" range of ports 0-65535"
                    ))),
                }
            }
            other => Err(bad(format!(
                "{other} is not a port number or a \"lo-hi\" string"
            ))),
        }
    }

    fn isolated(
        &mut self,
        raw: Vec<RawIsolated>,
        zones: &[Zone],
    ) -> Result<Vec<IsolatedClass>, PolicyError> {
        let mut names: HashMap<String, u32> = HashMap::new();
        let lan: Vec<IpNet> = zones
            .iter()
            .filter(|z| z.role == Role::Lan)
            .flat_map(|z| z.prefixes.iter().map(|p| p.value))
            .collect();
        let mut out = Vec::with_capacity(raw.len());
        for ri in raw {
            self.name(&ri.name, "isolated.name")?;
            let line = self.line(&ri.name.span());
            if let Some(first) = names.insert(ri.name.get_ref().clone(), line) {
                return Err(self.err(
                    &ri.name.span(),
                    "isolated.name",
                    format!(
                        "duplicate isolated class name {:?} (first at line {first})",
                        ri.name.get_ref()
                    ),
                ));
            }
            if ri.hosts.get_ref().is_empty() {
                return Err(self.err(
                    &ri.hosts.span(),
                    "isolated.hosts",
                    "an isolated class needs hosts",
                ));
            }
            let hosts = self.prefix_list(ri.hosts.get_ref(), "isolated.hosts")?;
            for h in &hosts {
                let same_family = lan
                    .iter()
                    .any(|l| l.addr().is_ipv4() == h.value.addr().is_ipv4());
                if same_family && !lan.iter().any(|l| l.contains(&h.value)) {
                    self.warn(
                        h.line,
                        "isolated.hosts",
                        format!("{} is outside every lan prefix; it is isolated only if it sends from the lan port", h.value),
                    );
                }
            }
            out.push(IsolatedClass {
                name: ri.name.into_inner(),
                description: ri.description,
                line,
                hosts,
            });
        }
        Ok(out)
    }

    fn feeds(&self, raw: Vec<RawFeed>) -> Result<Vec<FeedRef>, PolicyError> {
        let base = self.src.path.parent().unwrap_or(Path::new(""));
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for rf in raw {
            self.name(&rf.name, "feed.name")?;
            let line = self.line(&rf.name.span());
            if rf.name.get_ref() == crate::compile::INLINE_FEED {
                return Err(self.err(
                    &rf.name.span(),
                    "feed.name",
                    format!(
                        "{:?} is reserved for the [blocklist] of the policy itself",
                        crate::compile::INLINE_FEED
                    ),
                ));
            }
            if let Some(first) = names.insert(rf.name.get_ref().clone(), line) {
                return Err(self.err(
                    &rf.name.span(),
                    "feed.name",
                    format!(
                        "duplicate feed name {:?} (first at line {first})",
                        rf.name.get_ref()
                    ),
                ));
            }
            let format = *rf.format.get_ref();
            let raw_remote = crate::remote::RawRemote {
                url: rf.url,
                refresh_secs: rf.refresh_secs,
                max_bytes: rf.max_bytes,
                ca: rf.ca,
                min_entries: rf.min_entries,
                timeout_secs: rf.timeout_secs,
            };
            let path = match (rf.path, raw_remote.url.is_some()) {
                (Some(path), false) => path,
                (None, true) => {
                    let remote =
                        crate::remote::validate(self.src, rf.name.get_ref(), format, raw_remote)?;
                    out.push(FeedRef {
                        name: rf.name.into_inner(),
                        description: rf.description,
                        line: remote.1,
                        path: PathBuf::new(),
                        rel_path: remote.0.url.url.clone(),
                        format,
                        remote: Some(remote.0),
                    });
                    continue;
                }
                (Some(path), true) => {
                    return Err(self.err(
                        &path.span(),
                        "feed.path",
                        "a feed has either `path` (a file beside the policy) or `url` (fetched over HTTPS), not both",
                    ));
                }
                (None, false) => {
                    return Err(self.err(
                        &rf.name.span(),
                        "feed.path",
                        format!("feed {:?} needs `path` (a file beside the policy) or `url` (https://…)", rf.name.get_ref()),
                    ));
                }
            };
            crate::remote::no_remote_settings(self.src, &raw_remote)?;
            let rel = self.feed_path(&path, "feed.path")?;
            out.push(FeedRef {
                name: rf.name.into_inner(),
                description: rf.description,
                line: self.line(&path.span()),
                path: base.join(rel),
                rel_path: path.into_inner(),
                format,
                remote: None,
            });
        }
        Ok(out)
    }

    /// Feeds live beside the policy. Refusing absolute paths and ".." keeps a policy received over
    /// the API from reading arbitrary files (whose lines would end up in error messages).
    fn feed_path<'p>(
        &self,
        path: &'p Spanned<String>,
        field: &str,
    ) -> Result<&'p Path, PolicyError> {
        let rel = Path::new(path.get_ref());
        let contained = !path.get_ref().is_empty()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !contained {
            return Err(self.err(
                &path.span(),
                field,
                format!("{:?} must be a relative path inside the policy's directory (no \"..\", not absolute)", path.get_ref()),
            ));
        }
        Ok(rel)
    }

    /// `[[domain_feed]]`: names unique among domain feeds and distinct from the address feeds (an
    /// alert's `feed:<name>` must say which file listed the destination).
    fn domain_feeds(
        &self,
        raw: Vec<RawDomainFeed>,
        feeds: &[FeedRef],
    ) -> Result<Vec<DomainFeedRef>, PolicyError> {
        let base = self.src.path.parent().unwrap_or(Path::new(""));
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for rf in raw {
            self.name(&rf.name, "domain_feed.name")?;
            let line = self.line(&rf.name.span());
            if let Some(first) = names.insert(rf.name.get_ref().clone(), line) {
                return Err(self.err(
                    &rf.name.span(),
                    "domain_feed.name",
                    format!(
                        "duplicate domain feed name {:?} (first at line {first})",
                        rf.name.get_ref()
                    ),
                ));
            }
            if let Some(f) = feeds.iter().find(|f| f.name == *rf.name.get_ref()) {
                return Err(self.err(
                    &rf.name.span(),
                    "domain_feed.name",
                    format!(
                        "{:?} is already the name of the [[feed]] at line {}; alerts name feeds, so names must differ",
                        rf.name.get_ref(),
                        f.line
                    ),
                ));
            }
            let rel = self.feed_path(&rf.path, "domain_feed.path")?;
            out.push(DomainFeedRef {
                name: rf.name.into_inner(),
                description: rf.description,
                line: self.line(&rf.path.span()),
                path: base.join(rel),
                rel_path: rf.path.into_inner(),
                format: rf.format.into_inner(),
                exact_only: rf.exact_only,
            });
        }
        Ok(out)
    }

    fn domain_settings(
        &mut self,
        raw: Option<Spanned<RawDomains>>,
        domain_feeds: &[DomainFeedRef],
    ) -> Result<DomainSettings, PolicyError> {
        let Some(raw) = raw else {
            return Ok(DomainSettings::default());
        };
        let line = self.line(&raw.span());
        let section_span = raw.span();
        let raw = raw.into_inner();
        let action = match &raw.action {
            None => DomainAction::default(),
            Some(a) => match a.get_ref().as_str() {
                "nxdomain" => DomainAction::Nxdomain,
                "drop" => DomainAction::Drop,
                "sinkhole" => DomainAction::Sinkhole,
                other => {
                    return Err(self.err(
                        &a.span(),
                        "domains.action",
                        format!(
                            "unknown action {other:?}; expected \"nxdomain\", \"sinkhole\" or \"drop\""
                        ),
                    ));
                }
            },
        };
        let sinkhole_v4 = match &raw.sinkhole_v4 {
            None => None,
            Some(a) => Some(a.get_ref().parse::<std::net::Ipv4Addr>().map_err(|e| {
                self.err(
                    &a.span(),
                    "domains.sinkhole_v4",
                    format!("{:?} is not an IPv4 address: {e}", a.get_ref()),
                )
            })?),
        };
        let sinkhole_v6 = match &raw.sinkhole_v6 {
            None => None,
            Some(a) => Some(a.get_ref().parse::<std::net::Ipv6Addr>().map_err(|e| {
                self.err(
                    &a.span(),
                    "domains.sinkhole_v6",
                    format!("{:?} is not an IPv6 address: {e}", a.get_ref()),
                )
            })?),
        };
        let sinkhole_ttl = match &raw.sinkhole_ttl {
            None => SINKHOLE_TTL_DEFAULT,
            // RFC 2181 §8: a TTL is 0 ..= 2^31 - 1.
            Some(t) => u32::try_from(*t.get_ref())
                .ok()
                .filter(|t| *t <= i32::MAX as u32)
                .ok_or_else(|| {
                    self.err(
                        &t.span(),
                        "domains.sinkhole_ttl",
                        format!("{} is not a TTL (0 to 2147483647 seconds)", t.get_ref()),
                    )
                })?,
        };
        if action == DomainAction::Sinkhole && sinkhole_v4.is_none() && sinkhole_v6.is_none() {
            let at = raw.action.as_ref().map_or(section_span, |a| a.span());
            return Err(self.err(
                &at,
                "domains.action",
                "action \"sinkhole\" needs sinkhole_v4 and/or sinkhole_v6".to_owned(),
            ));
        }
        if action != DomainAction::Sinkhole
            && (sinkhole_v4.is_some() || sinkhole_v6.is_some() || raw.sinkhole_ttl.is_some())
        {
            self.warn(
                line,
                "domains",
                "sinkhole_v4/sinkhole_v6/sinkhole_ttl are ignored unless action = \"sinkhole\"",
            );
        }
        let pass_malformed = match &raw.malformed {
            None => false,
            Some(m) => match m.get_ref().as_str() {
                "drop" => false,
                "pass" => true,
                other => {
                    return Err(self.err(
                        &m.span(),
                        "domains.malformed",
                        format!("unknown handling {other:?}; expected \"drop\" or \"pass\""),
                    ));
                }
            },
        };
        let mut sni_ports = SNI_PORTS_DEFAULT;
        if let Some(list) = &raw.sni_ports {
            if list.get_ref().len() > MAX_SNI_PORTS {
                return Err(self.err(
                    &list.span(),
                    "domains.sni_ports",
                    format!(
                        "{} ports; at most {MAX_SNI_PORTS} can be inspected",
                        list.get_ref().len()
                    ),
                ));
            }
            sni_ports = [0; MAX_SNI_PORTS];
            for (i, p) in list.get_ref().iter().enumerate() {
                let port = *p.get_ref();
                if !(1..=65535).contains(&port) {
                    return Err(self.err(
                        &p.span(),
                        "domains.sni_ports",
                        format!("port {port} is not in 1..=65535"),
                    ));
                }
                // Port 53 is the DNS step's: the data path reads a segment to it as a DNS message.
                if port == 53 {
                    return Err(self.err(
                        &p.span(),
                        "domains.sni_ports",
                        "port 53 is DNS (its queries are judged as DNS); TLS is not read there"
                            .to_string(),
                    ));
                }
                if sni_ports[..i].contains(&(port as u16)) {
                    return Err(self.err(
                        &p.span(),
                        "domains.sni_ports",
                        format!("port {port} is listed twice"),
                    ));
                }
                sni_ports[i] = port as u16;
            }
        }
        let learn_ttl_max_secs = match &raw.learn_ttl_max_secs {
            None => LEARN_TTL_MAX_DEFAULT,
            Some(t) => {
                let v = *t.get_ref();
                if !(0..=LEARN_TTL_MAX_LIMIT as i64).contains(&v) {
                    return Err(self.err(
                        &t.span(),
                        "domains.learn_ttl_max_secs",
                        format!(
                            "{v} is not in 0..={LEARN_TTL_MAX_LIMIT} (seconds; 0 turns learning off)"
                        ),
                    ));
                }
                v as u32
            }
        };
        if domain_feeds.is_empty() {
            self.warn(
                line,
                "domains",
                "[domains] without any [[domain_feed]]: DNS queries are not inspected",
            );
        }
        Ok(DomainSettings {
            action,
            pass_malformed,
            sinkhole_v4,
            sinkhole_v6,
            sinkhole_ttl,
            sni_ports,
            learn_ttl_max_secs,
        })
    }
}

fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    match (a, b) {
        (IpNet::V4(a), IpNet::V4(b)) => a.overlaps(b),
        (IpNet::V6(a), IpNet::V6(b)) => a.overlaps(b),
        _ => false,
    }
}
