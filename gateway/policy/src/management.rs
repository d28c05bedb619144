//! The policy's `[management]` section: who may reach the gateway's management plane (the mTLS API,
//! the metrics endpoint, SSH) and on which TCP ports. gatewayd renders it into the nftables ruleset
//! (`gateway-nft`); the XDP data path does not look at it.
//!
//! ```toml
//! [management]
//! prefixes = ["10.10.0.0/28", "fd00:10::/124", "172.16.0.2/32"]  # admins' PCs, the SOC's scraper
//! api_port = 8443               # default 8443: the port gatewayd --api-listen binds
//! ssh_port = 22                 # optional: absent = no SSH opened
//! allow_any = false             # default: every prefix must lie inside zones.lan or zones.dedicated
//! ```
//!
//! Safe by construction: without the section nothing reaches the management plane from the network
//! (the ruleset opens no management port); a prefix outside the lan and dedicated zones — including
//! `0.0.0.0/0` — needs `allow_any = true`, written where a reviewer sees it. Whatever the prefixes say,
//! the ruleset never opens the management plane on an `internet` port. The metrics port comes from
//! `[telemetry.metrics] listen` and is opened to the same prefixes (the SOC scrapes from the dedicated
//! network, so its scraper's address belongs here).

use std::fmt;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{PolicyError, SourceText};
use crate::policy::{Located, Zone};
use crate::prefixes::parse_net;
use crate::telemetry::MetricsEndpoint;

/// The management API's default port.
pub const DEFAULT_API_PORT: u16 = 8443;

/// The validated `[management]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Management {
    /// Sources admitted to the management ports (lan and dedicated ports only). Empty when the policy
    /// has no `[management]` section: nobody.
    pub prefixes: Vec<Located<IpNet>>,
    pub api_port: u16,
    /// Line of `api_port`, or of the section when the default applies (1 without a section): where
    /// a refusal that concerns the API port points.
    pub api_port_line: u32,
    pub ssh_port: Option<u16>,
    /// `allow_any = true`: prefixes outside the lan/dedicated zones were accepted on purpose.
    pub allow_any: bool,
}

impl Default for Management {
    fn default() -> Self {
        Management {
            prefixes: Vec::new(),
            api_port: DEFAULT_API_PORT,
            api_port_line: 1,
            ssh_port: None,
            allow_any: false,
        }
    }
}

impl Management {
    /// The prefixes without their lines.
    pub fn nets(&self) -> Vec<IpNet> {
        self.prefixes.iter().map(|p| p.value).collect()
    }

    /// Does `addr` fall in a management prefix?
    pub fn admits(&self, addr: std::net::IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.value.contains(&addr))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManagement {
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    api_port: Option<Spanned<i64>>,
    ssh_port: Option<Spanned<i64>>,
    allow_any: Option<Spanned<bool>>,
}

/// Validate the section against the zones (already validated) and the metrics endpoint.
pub(crate) fn validate(
    src: &SourceText<'_>,
    raw: Option<Spanned<RawManagement>>,
    zones: &[Zone],
    metrics: Option<&MetricsEndpoint>,
) -> Result<Management, PolicyError> {
    let Some(raw) = raw else {
        return Ok(Management::default());
    };
    let section_line = src.line_of_span(&raw.span());
    let raw = raw.into_inner();
    let api_port_line = raw
        .api_port
        .as_ref()
        .map_or(section_line, |s| src.line_of_span(&s.span()));
    let allow_any = raw.allow_any.as_ref().is_some_and(|a| *a.get_ref());
    let api_port =
        port(src, raw.api_port.as_ref(), "management.api_port")?.unwrap_or(DEFAULT_API_PORT);
    let ssh_port = port(src, raw.ssh_port.as_ref(), "management.ssh_port")?;
    if let (Some(ssh), Some(s)) = (ssh_port, raw.ssh_port.as_ref())
        && ssh == api_port
    {
        return Err(src.invalid(
            &s.span(),
            "management.ssh_port",
            format!("{ssh} is also the API port"),
        ));
    }
    if let Some(m) = metrics {
        for (p, field, raw_port) in [
            (Some(api_port), "management.api_port", raw.api_port.as_ref()),
            (ssh_port, "management.ssh_port", raw.ssh_port.as_ref()),
        ] {
            if p == Some(m.listen.port()) {
                // The default API port has no span of its own: the section's first line stands in.
                let line = raw_port.map_or(1, |s| src.line_of_span(&s.span()));
                return Err(PolicyError::invalid(
                    src.path,
                    line,
                    field,
                    format!(
                        "port {} is also the metrics endpoint's ([telemetry.metrics] listen = \"{}\")",
                        m.listen.port(),
                        m.listen
                    ),
                ));
            }
        }
    }
    let inside: Vec<IpNet> = zones
        .iter()
        .filter(|z| {
            matches!(
                z.role,
                gateway_common::Role::Lan | gateway_common::Role::Dedicated
            )
        })
        .flat_map(|z| z.prefixes.iter().map(|p| p.value))
        .collect();
    let mut prefixes: Vec<Located<IpNet>> = Vec::new();
    for s in &raw.prefixes {
        let text = s.get_ref().trim();
        let p = parse_net(text).map_err(|e| {
            src.invalid(
                &s.span(),
                "management.prefixes",
                format!("{:?} {}", s.get_ref(), e.describe()),
            )
        })?;
        if p.host_bits {
            return Err(src.invalid(
                &s.span(),
                "management.prefixes",
                format!(
                    "{text:?} has host bits set; the network is {} (or give the host as /{})",
                    p.net,
                    p.net.max_prefix_len()
                ),
            ));
        }
        if !allow_any && !inside.iter().any(|z| z.contains(&p.net)) {
            return Err(src.invalid(
                &s.span(),
                "management.prefixes",
                format!(
                    "{} is not inside the lan or dedicated zone prefixes; management from elsewhere needs `allow_any = true` in [management]",
                    p.net
                ),
            ));
        }
        let line = src.line_of_span(&s.span());
        if let Some(first) = prefixes.iter().find(|q| q.value == p.net) {
            return Err(src.invalid(
                &s.span(),
                "management.prefixes",
                format!("{} is listed twice (line {})", p.net, first.line),
            ));
        }
        prefixes.push(Located { value: p.net, line });
    }
    Ok(Management {
        prefixes,
        api_port,
        api_port_line,
        ssh_port,
        allow_any,
    })
}

fn port(
    src: &SourceText<'_>,
    raw: Option<&Spanned<i64>>,
    field: &str,
) -> Result<Option<u16>, PolicyError> {
    let Some(v) = raw else { return Ok(None) };
    match u16::try_from(*v.get_ref()) {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(src.invalid(
            &v.span(),
            field,
            format!("{} is not a TCP port; expected 1..=65535", v.get_ref()),
        )),
    }
}

/// What changes in `[management]` from one policy to the next, for the apply report and the audit
/// log (the image diff does not cover it: the section is not part of the map image).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagementDiff {
    pub added: Vec<IpNet>,
    pub removed: Vec<IpNet>,
    /// `(field, old, new)` for api_port, ssh_port, allow_any.
    pub changed: Vec<(&'static str, String, String)>,
}

impl ManagementDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

pub fn diff(old: &Management, new: &Management) -> ManagementDiff {
    let (o, n) = (old.nets(), new.nets());
    let opt = |p: Option<u16>| p.map_or_else(|| "none".to_string(), |p| p.to_string());
    let mut changed = Vec::new();
    if old.api_port != new.api_port {
        changed.push((
            "api_port",
            old.api_port.to_string(),
            new.api_port.to_string(),
        ));
    }
    if old.ssh_port != new.ssh_port {
        changed.push(("ssh_port", opt(old.ssh_port), opt(new.ssh_port)));
    }
    if old.allow_any != new.allow_any {
        changed.push((
            "allow_any",
            old.allow_any.to_string(),
            new.allow_any.to_string(),
        ));
    }
    ManagementDiff {
        added: n.iter().filter(|p| !o.contains(p)).copied().collect(),
        removed: o.iter().filter(|p| !n.contains(p)).copied().collect(),
        changed,
    }
}

impl fmt::Display for ManagementDiff {
    /// `management: +1 -1 ~0` and one line per change, in the image diff's shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "management: +{} -{} ~{}",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        )?;
        for p in &self.added {
            writeln!(f, "  + prefix {p}")?;
        }
        for p in &self.removed {
            writeln!(f, "  - prefix {p}")?;
        }
        for (field, old, new) in &self.changed {
            writeln!(f, "  ~ {field} {old} -> {new}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use std::path::Path;

    use crate::profile::parse_profile;

    /// The lab's profile: lan0, ded0, inet0.
    const PROFILE: &str = include_str!("../../../hw/lab-veth.toml");

    fn policy(management: &str) -> Result<crate::Policy, crate::PolicyError> {
        let text = format!(
            r#"[policy]
name = "t"
version = 1
[zones.lan]
ports = ["lan0"]
prefixes = ["10.10.0.0/24", "fd00:10::/64"]
[zones.dedicated]
ports = ["ded0"]
prefixes = ["172.16.0.0/24"]
[zones.internet]
ports = ["inet0"]
[telemetry.metrics]
listen = "172.16.0.1:9100"
{management}"#
        );
        let profile = parse_profile(PROFILE, Path::new("p.toml")).unwrap();
        crate::parse_policy(&text, Path::new("/etc/pol.toml"), &profile).map(|(p, _)| p)
    }

    #[test]
    fn absent_section_admits_nobody() {
        let p = policy("").unwrap();
        assert!(p.management.prefixes.is_empty());
        assert_eq!(p.management.api_port, super::DEFAULT_API_PORT);
        assert_eq!(p.management.ssh_port, None);
    }

    #[test]
    fn lab_section() {
        let p = policy(
            "[management]\nprefixes = [\"10.10.0.0/28\", \"fd00:10::/124\", \"172.16.0.2/32\"]\nssh_port = 22\n",
        )
        .unwrap();
        let m = &p.management;
        assert_eq!(m.prefixes.len(), 3);
        assert_eq!(m.prefixes[2].line, 15);
        assert_eq!((m.api_port, m.ssh_port), (8443, Some(22)));
        // The default API port is attributed to the section's header line.
        assert_eq!(m.api_port_line, 14);
        assert!(m.admits("10.10.0.2".parse().unwrap()));
        assert!(!m.admits("10.10.0.20".parse().unwrap()));
    }

    fn err(management: &str) -> String {
        policy(management).unwrap_err().to_string()
    }

    #[test]
    fn refusals_name_file_line_field() {
        assert_eq!(
            err("[management]\nprefixes = [\"0.0.0.0/0\"]\n"),
            "/etc/pol.toml:15: management.prefixes: 0.0.0.0/0 is not inside the lan or dedicated zone prefixes; management from elsewhere needs `allow_any = true` in [management]"
        );
        assert_eq!(
            err("[management]\nprefixes = [\"10.10.0.1/28\"]\n"),
            "/etc/pol.toml:15: management.prefixes: \"10.10.0.1/28\" has host bits set; the network is 10.10.0.0/28 (or give the host as /32)"
        );
        assert_eq!(
            err("[management]\nprefixes = [\"10.10.0.0/28\",\n \"10.10.0.0/28\"]\n"),
            "/etc/pol.toml:16: management.prefixes: 10.10.0.0/28 is listed twice (line 15)"
        );
        assert_eq!(
            err("[management]\napi_port = 70000\n"),
            "/etc/pol.toml:15: management.api_port: 70000 is not a TCP port; expected 1..=65535"
        );
        assert_eq!(
            err("[management]\napi_port = 9100\n"),
            "/etc/pol.toml:15: management.api_port: port 9100 is also the metrics endpoint's ([telemetry.metrics] listen = \"172.16.0.1:9100\")"
        );
        assert_eq!(
            err("[management]\nssh_port = 8443\n"),
            "/etc/pol.toml:15: management.ssh_port: 8443 is also the API port"
        );
        assert!(err("[management]\nprefix = []\n").contains("management"));
    }

    #[test]
    fn allow_any_opens_outside_zones() {
        let p = policy("[management]\nprefixes = [\"0.0.0.0/0\"]\nallow_any = true\n").unwrap();
        assert!(p.management.allow_any);
        assert!(p.management.admits("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn diff_lists_changes() {
        let a = policy("[management]\nprefixes = [\"10.10.0.0/28\"]\n").unwrap();
        let b = policy("[management]\nprefixes = [\"10.10.0.16/28\"]\nssh_port = 22\n").unwrap();
        let d = super::diff(&a.management, &b.management);
        assert_eq!(
            d.to_string(),
            "management: +1 -1 ~1\n  + prefix 10.10.0.16/28\n  - prefix 10.10.0.0/28\n  ~ ssh_port none -> 22\n"
        );
        assert!(super::diff(&a.management, &a.management).is_empty());
    }
}
