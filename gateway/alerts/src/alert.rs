//! The alert the daemon builds from a kernel drop event: its JSON form (stable field names, one
//! object per line in the JSONL sink) and its one-line human sentence (the syslog MSG).
use std::{fmt, net::IpAddr, time::SystemTime};

use gateway_common::{Reason, Role, Verdict};
use serde::{Deserialize, Serialize};

use crate::rfc3339;

/// One blocked (or, if the daemon ever asks, passed) packet, as the SOC sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub time: SystemTime,
    /// The gateway's hostname / device id.
    pub host: String,
    pub reason: Reason,
    /// Role of the ingress port.
    pub role: Role,
    /// Port names from the hardware profile.
    pub ingress: String,
    pub egress: Option<String>,
    /// 4 or 6; 0 for a frame that is not IP or too malformed to say.
    pub family: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IP protocol number.
    pub proto: u8,
    /// Host order; 0 when the protocol has no ports.
    pub sport: u16,
    /// Host order. For ICMP/ICMPv6 the kernel's `[type, code]` read big-endian: `type << 8 | code`.
    pub dport: u16,
    /// Frame length.
    pub bytes: u32,
    pub tcp_flags: u8,
    /// `feed:<name>`, `system:<name>`, `isolated`, or the reason word.
    pub rule: String,
    pub community_id: Option<String>,
    /// Rate-limited events of the same (source, reason) folded into this one.
    pub suppressed: u32,
    /// Name and generation of the policy in force.
    pub policy: String,
    pub generation: u64,
    /// Reason `domain`: the name that was blocked (a DNS query's or response's question, or a TLS
    /// ClientHello's server_name; see `domain_via`).
    pub domain: Option<String>,
    /// Reason `domain` with a name: where it was read, `dns_query`, `tls_sni` or `dns_response`.
    pub domain_via: Option<String>,
    /// Reason `domain`: the listed name that blocked it (`*.example.com` when it matched a name
    /// below the listed one).
    pub domain_match: Option<String>,
}

/// IANA protocol numbers the sentence and the JSON name; the rest print as `proto <n>`.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

fn is_icmp(proto: u8) -> bool {
    matches!(proto, 1 | 58)
}

fn role_from_word(word: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.as_str() == word)
}

/// An address with its port, IPv6 in brackets so the port stays readable.
struct Endpoint(IpAddr, Option<u16>);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, Some(p)) => write!(f, "{a}:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

impl Alert {
    /// The one-line human sentence, e.g.
    /// `blocked 10.10.0.2:51234 → 203.0.113.66:443/tcp on lan0: blocklist (feed:soc-indicators)`.
    pub fn sentence(&self) -> String {
        self.to_string()
    }

    /// The alert as one JSON object without a trailing newline (a JSON line).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    fn verb(&self) -> &'static str {
        match self.reason.verdict() {
            Verdict::Drop => "blocked",
            Verdict::Pass => "passed",
        }
    }
}

impl Alert {
    /// `blocked DNS query evil.example.com (matched *.example.com, domain_feed:threats) from
    /// 10.10.0.2 on lan0` (or `TLS ClientHello for …`, `DNS response for …`): what the SOC needs
    /// first about a blocked name.
    fn fmt_dns(&self, f: &mut fmt::Formatter<'_>, domain: &str) -> fmt::Result {
        let what = match self.domain_via.as_deref() {
            Some("tls_sni") => "TLS ClientHello for",
            Some("dns_response") => "DNS response for",
            _ => "DNS query",
        };
        write!(f, "{} {what} {domain} (", self.verb())?;
        if let Some(m) = &self.domain_match {
            write!(f, "matched {m}, ")?;
        }
        write!(f, "{})", self.rule)?;
        if let Some(src) = self.src {
            let port = has_ports(self.proto).then_some(self.sport);
            write!(f, " from {}", Endpoint(src, port))?;
        }
        if let Some(dst) = self.dst {
            let proto = proto_name(self.proto).unwrap_or("ip");
            write!(f, " to {}/{proto}", Endpoint(dst, Some(self.dport)))?;
        }
        write!(f, " on {}", self.ingress)?;
        if self.suppressed > 0 {
            write!(f, ", +{} similar suppressed", self.suppressed)?;
        }
        Ok(())
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason == Reason::Domain
            && let Some(domain) = &self.domain
        {
            return self.fmt_dns(f, domain);
        }
        write!(f, "{} ", self.verb())?;
        match (self.src, self.dst) {
            (Some(src), Some(dst)) => {
                let ports = has_ports(self.proto);
                write!(
                    f,
                    "{} → {}",
                    Endpoint(src, ports.then_some(self.sport)),
                    Endpoint(dst, ports.then_some(self.dport))
                )?;
                match proto_name(self.proto) {
                    Some(name) => write!(f, "/{name}")?,
                    None => write!(f, "/proto {}", self.proto)?,
                }
                if is_icmp(self.proto) {
                    write!(f, " type {} code {}", self.dport >> 8, self.dport & 0xff)?;
                }
            }
            // A frame the parser could not read addresses from (non-IP, malformed).
            _ => write!(f, "a {}-byte frame", self.bytes)?,
        }
        write!(f, " on {}", self.ingress)?;
        if let Some(egress) = &self.egress {
            write!(f, " → {egress}")?;
        }
        write!(f, ": {}", self.reason.as_str())?;
        if let Some(domain) = &self.domain {
            write!(f, " {domain}")?;
        }
        if !self.rule.is_empty() && self.rule != self.reason.as_str() {
            write!(f, " ({})", self.rule)?;
        }
        if self.suppressed > 0 {
            write!(f, ", +{} similar suppressed", self.suppressed)?;
        }
        Ok(())
    }
}

/// The JSON shape. Field names are a contract with the SOC: add fields, never rename. Optional
/// values are always present (`null`) so every line has the same keys. `verdict`, `proto_name`
/// and `message` are derived and ignored when reading a line back.
#[derive(Serialize)]
struct JsonOut<'a> {
    time: String,
    host: &'a str,
    reason: &'static str,
    verdict: &'static str,
    role: &'static str,
    ingress: &'a str,
    egress: Option<&'a str>,
    family: u8,
    src: Option<String>,
    dst: Option<String>,
    proto: u8,
    proto_name: Option<&'static str>,
    sport: u16,
    dport: u16,
    bytes: u32,
    tcp_flags: u8,
    rule: &'a str,
    community_id: Option<&'a str>,
    suppressed: u32,
    policy: &'a str,
    generation: u64,
    domain: Option<&'a str>,
    domain_match: Option<&'a str>,
    domain_via: Option<&'a str>,
    message: String,
}

#[derive(Deserialize)]
struct JsonIn {
    time: String,
    host: String,
    reason: String,
    role: String,
    ingress: String,
    egress: Option<String>,
    family: u8,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: u8,
    sport: u16,
    dport: u16,
    bytes: u32,
    tcp_flags: u8,
    rule: String,
    community_id: Option<String>,
    suppressed: u32,
    policy: String,
    generation: u64,
    domain: Option<String>,
    #[serde(default)]
    domain_match: Option<String>,
    #[serde(default)]
    domain_via: Option<String>,
}

impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        JsonOut {
            time: rfc3339::format(self.time),
            host: &self.host,
            reason: self.reason.as_str(),
            verdict: match self.reason.verdict() {
                Verdict::Drop => "drop",
                Verdict::Pass => "pass",
            },
            role: self.role.as_str(),
            ingress: &self.ingress,
            egress: self.egress.as_deref(),
            family: self.family,
            src: self.src.map(|a| a.to_string()),
            dst: self.dst.map(|a| a.to_string()),
            proto: self.proto,
            proto_name: proto_name(self.proto),
            sport: self.sport,
            dport: self.dport,
            bytes: self.bytes,
            tcp_flags: self.tcp_flags,
            rule: &self.rule,
            community_id: self.community_id.as_deref(),
            suppressed: self.suppressed,
            policy: &self.policy,
            generation: self.generation,
            domain: self.domain.as_deref(),
            domain_match: self.domain_match.as_deref(),
            domain_via: self.domain_via.as_deref(),
            message: self.sentence(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Alert {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let j = JsonIn::deserialize(deserializer)?;
        Ok(Alert {
            time: rfc3339::parse(&j.time).ok_or_else(|| {
                D::Error::custom(format!("time {:?} is not RFC 3339 UTC", j.time))
            })?,
            reason: Reason::from_str_name(&j.reason)
                .ok_or_else(|| D::Error::custom(format!("unknown reason {:?}", j.reason)))?,
            role: role_from_word(&j.role)
                .ok_or_else(|| D::Error::custom(format!("unknown role {:?}", j.role)))?,
            host: j.host,
            ingress: j.ingress,
            egress: j.egress,
            family: j.family,
            src: j.src,
            dst: j.dst,
            proto: j.proto,
            sport: j.sport,
            dport: j.dport,
            bytes: j.bytes,
            tcp_flags: j.tcp_flags,
            rule: j.rule,
            community_id: j.community_id,
            suppressed: j.suppressed,
            policy: j.policy,
            generation: j.generation,
            domain: j.domain,
            domain_match: j.domain_match,
            domain_via: j.domain_via,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// The example of the brief: an office host reaching a blocklisted server.
    pub(crate) fn sample() -> Alert {
        Alert {
            time: UNIX_EPOCH + Duration::from_millis(1_735_787_045_678),
            host: "gw-ward-07".to_owned(),
            reason: Reason::Blocklist,
            role: Role::Lan,
            ingress: "lan0".to_owned(),
            egress: None,
            family: 4,
            src: Some("10.10.0.2".parse().expect("addr")),
            dst: Some("203.0.113.66".parse().expect("addr")),
            proto: 6,
            sport: 51234,
            dport: 443,
            bytes: 74,
            tcp_flags: 0x02,
            rule: "feed:soc-indicators".to_owned(),
            community_id: Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg=".to_owned()),
            suppressed: 0,
            policy: "ward-office".to_owned(),
            generation: 3,
            domain: None,
            domain_match: None,
            domain_via: None,
        }
    }

    #[test]
    fn sentence_of_the_brief() {
        assert_eq!(
            sample().sentence(),
            "blocked 10.10.0.2:51234 → 203.0.113.66:443/tcp on lan0: blocklist (feed:soc-indicators)"
        );
    }

    #[test]
    fn sentences_for_other_shapes() {
        let mut a = sample();
        a.reason = Reason::SharedViaInternet;
        a.family = 6;
        a.src = Some("2001:db8:10::2".parse().expect("addr"));
        a.dst = Some("2001:db8:200::10".parse().expect("addr"));
        a.egress = Some("inet0".to_owned());
        a.rule = "system:npdb".to_owned();
        a.suppressed = 41;
        assert_eq!(
            a.sentence(),
            "blocked [2001:db8:10::2]:51234 → [2001:db8:200::10]:443/tcp on lan0 → inet0: \
             shared_via_internet (system:npdb), +41 similar suppressed"
        );

        let mut a = sample();
        a.reason = Reason::Isolated;
        a.rule = "isolated".to_owned();
        a.proto = 1;
        a.sport = 0;
        a.dport = 8 << 8;
        assert_eq!(
            a.sentence(),
            "blocked 10.10.0.2 → 203.0.113.66/icmp type 8 code 0 on lan0: isolated"
        );

        let mut a = sample();
        a.reason = Reason::Spoofed;
        a.role = Role::Internet;
        a.ingress = "inet0".to_owned();
        a.rule = "spoofed".to_owned();
        a.proto = 253;
        assert_eq!(
            a.sentence(),
            "blocked 10.10.0.2 → 203.0.113.66/proto 253 on inet0: spoofed"
        );

        let mut a = sample();
        a.reason = Reason::Malformed;
        a.family = 0;
        a.src = None;
        a.dst = None;
        a.rule = String::new();
        a.bytes = 60;
        assert_eq!(a.sentence(), "blocked a 60-byte frame on lan0: malformed");

        let mut a = sample();
        a.reason = Reason::Domain;
        a.proto = 17;
        a.dport = 53;
        a.domain = Some("www.evil.example".to_owned());
        a.domain_match = Some("*.evil.example".to_owned());
        a.rule = "domain_feed:soc-domains".to_owned();
        assert_eq!(
            a.sentence(),
            "blocked DNS query www.evil.example (matched *.evil.example, domain_feed:soc-domains) \
             from 10.10.0.2:51234 to 203.0.113.66:53/udp on lan0"
        );
        // The same name read from a TLS ClientHello's server_name.
        let mut sni = a.clone();
        sni.proto = 6;
        sni.dport = 443;
        sni.domain_via = Some("tls_sni".to_owned());
        assert_eq!(
            sni.sentence(),
            "blocked TLS ClientHello for www.evil.example (matched *.evil.example, \
             domain_feed:soc-domains) from 10.10.0.2:51234 to 203.0.113.66:443/tcp on lan0"
        );
        // A `domain` alert without a name (a packet to a learnt address: it carries none) keeps
        // the general shape.
        a.domain = None;
        a.domain_match = None;
        assert_eq!(
            a.sentence(),
            "blocked 10.10.0.2:51234 → 203.0.113.66:53/udp on lan0: domain (domain_feed:soc-domains)"
        );
    }

    #[test]
    fn json_field_names_are_stable() {
        let json: serde_json::Value =
            serde_json::from_str(&sample().to_json().expect("json")).expect("parse");
        let expected = serde_json::json!({
            "time": "2025-01-02T03:04:05.678Z",
            "host": "gw-ward-07",
            "reason": "blocklist",
            "verdict": "drop",
            "role": "lan",
            "ingress": "lan0",
            "egress": null,
            "family": 4,
            "src": "10.10.0.2",
            "dst": "203.0.113.66",
            "proto": 6,
            "proto_name": "tcp",
            "sport": 51234,
            "dport": 443,
            "bytes": 74,
            "tcp_flags": 2,
            "rule": "feed:soc-indicators",
            "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "suppressed": 0,
            "policy": "ward-office",
            "generation": 3,
            "domain": null,
            "domain_match": null,
            "domain_via": null,
            "message": "blocked 10.10.0.2:51234 → 203.0.113.66:443/tcp on lan0: blocklist (feed:soc-indicators)",
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn json_round_trips_and_refuses_unknown_words() {
        let mut a = sample();
        a.egress = Some("ded0".to_owned());
        a.src = Some("2001:db8::1".parse().expect("addr"));
        a.domain = Some("x.example".to_owned());
        a.host = "gw \"quoted\" \\ ] é".to_owned();
        let text = a.to_json().expect("json");
        assert!(!text.contains('\n'));
        let back: Alert = serde_json::from_str(&text).expect("read back");
        assert_eq!(back, a);

        let bad = text.replace("\"blocklist\"", "\"bogus\"");
        let e = serde_json::from_str::<Alert>(&bad).expect_err("unknown reason");
        assert!(e.to_string().contains("unknown reason \"bogus\""), "{e}");
        let bad = text.replace("\"role\":\"lan\"", "\"role\":\"dmz\"");
        let e = serde_json::from_str::<Alert>(&bad).expect_err("unknown role");
        assert!(e.to_string().contains("unknown role \"dmz\""), "{e}");
    }
}
