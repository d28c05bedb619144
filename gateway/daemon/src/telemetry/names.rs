//! What the data path's numbers stand for: port names by ifindex and rule names by id, for flow
//! records, alerts and metrics. Rebuilt whenever a policy is applied (ids index the image in force).
use std::collections::HashMap;

use gateway_common::{Reason, Role, flow::NO_RULE};
use gateway_dataplane::AttachedPort;
use gateway_policy::MapImage;

#[derive(Clone, Debug, Default)]
pub struct Names {
    ports: HashMap<u32, (String, Role)>,
    feeds: Vec<String>,
    domain_feeds: Vec<String>,
    systems: Vec<String>,
}

impl Names {
    pub fn new(ports: &[AttachedPort], image: &MapImage) -> Names {
        Names {
            ports: ports
                .iter()
                .map(|p| (p.ifindex, (p.name.clone(), p.role)))
                .collect(),
            feeds: image.feeds.iter().map(|f| f.name.clone()).collect(),
            domain_feeds: image.domain_feeds.iter().map(|f| f.name.clone()).collect(),
            systems: image.systems.iter().map(|s| s.name.clone()).collect(),
        }
    }

    /// The profile's name of the port with this ifindex (`None` for 0 or a device not ours).
    pub fn port(&self, ifindex: u32) -> Option<&str> {
        self.ports.get(&ifindex).map(|(name, _)| name.as_str())
    }

    /// The rule that decided: `feed:<name>` for blocklist hits, `domain_feed:<name>` for DNS
    /// queries for listed names, `system:<name>` for traffic to a shared system, else the reason
    /// word (the verdict order itself decided).
    pub fn rule(&self, reason: Reason, rule: u32) -> String {
        let named = |list: &[String], prefix: &str| {
            (rule != NO_RULE)
                .then(|| list.get(rule as usize))
                .flatten()
                .map(|name| format!("{prefix}:{name}"))
        };
        let found = match reason {
            Reason::Blocklist | Reason::BlocklistIn => named(&self.feeds, "feed"),
            Reason::Domain => named(&self.domain_feeds, "domain_feed"),
            Reason::Pass | Reason::NotAllowed | Reason::SharedViaInternet => {
                named(&self.systems, "system")
            }
            _ => None,
        };
        found.unwrap_or_else(|| reason.as_str().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_dataplane::XdpModeName;
    use gateway_policy::image::{FeedInfo, SystemInfo};

    #[test]
    fn rules_and_ports_are_named() {
        let image = MapImage {
            feeds: vec![
                FeedInfo {
                    name: "policy".into(),
                    entries: 1,
                },
                FeedInfo {
                    name: "spamhaus-drop".into(),
                    entries: 9,
                },
            ],
            systems: vec![SystemInfo {
                name: "npdb".into(),
            }],
            ..MapImage::default()
        };
        let ports = [AttachedPort {
            name: "lan0".into(),
            ifname: "enp1s0".into(),
            ifindex: 7,
            role: Role::Lan,
            mode: XdpModeName::Native,
            adopted: false,
        }];
        let n = Names::new(&ports, &image);
        assert_eq!(n.rule(Reason::Blocklist, 1), "feed:spamhaus-drop");
        assert_eq!(n.rule(Reason::SharedViaInternet, 0), "system:npdb");
        assert_eq!(n.rule(Reason::Pass, NO_RULE), "pass");
        assert_eq!(
            n.rule(Reason::Blocklist, 42),
            "blocklist",
            "a stale id falls back to the reason"
        );
        assert_eq!(n.rule(Reason::Isolated, 0), "isolated");
        assert_eq!(n.port(7), Some("lan0"));
        assert_eq!(n.port(0), None);
    }
}
