//! What the ruleset is rendered from: plain data, independent of the TOML files, so the daemon, the
//! tests and a later `[management]` section of the policy all feed the same renderer.

use gateway_common::Role;
use gateway_policy::{DeviceMatch, Policy, PortSpec, Profile};
use ipnet::{IpNet, Ipv6Net};

/// Everything [`crate::render()`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftInput {
    /// Every port of the box with its kernel interface name and role.
    pub ports: Vec<Port>,
    /// The office networks: the only sources the gateway forwards from a `lan` port (anti-spoofing;
    /// a family without prefixes forwards nothing from the lan).
    pub lan_prefixes: Vec<IpNet>,
    /// The dedicated network's prefixes plus every shared system's: the only sources forwarded from a
    /// `dedicated` port to the lan (the XDP program admits the same sources on that port).
    pub dedicated_prefixes: Vec<IpNet>,
    pub management: Management,
    /// Masquerade IPv4 leaving by an `internet` port.
    pub masquerade: bool,
    /// IPv6 sources masqueraded leaving by an `internet` port (NAT66). Unique-local lan prefixes
    /// (fc00::/7) cannot be routed on the Internet, so without this their hosts have no IPv6 there;
    /// global prefixes are routed unchanged.
    pub masquerade_v6: Vec<Ipv6Net>,
    /// Services the gateway itself offers the lan. The firmware image configures none (the lan port
    /// has a static address, no DHCP server, no resolver), so [`NftInput::from_policy`] opens none.
    pub lan_services: LanServices,
}

/// What the boot ruleset ([`crate::render_boot`]) is rendered from: it runs before any policy is
/// loaded, so only the hardware profile and the image's fixed service ports feed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootInput {
    /// Kernel interface names of the `dedicated` ports.
    pub dedicated_ifnames: Vec<String>,
    /// The metrics endpoint's TCP ports (the image: `METRICS_TCP_PORTS` of `gateway-services.nft`).
    pub metrics_tcp_ports: Vec<u16>,
}

impl BootInput {
    /// Dedicated ports from the profile, named as [`NftInput::from_policy`] names them.
    pub fn from_profile(profile: &Profile, metrics_tcp_ports: Vec<u16>) -> BootInput {
        let mut dedicated_ifnames: Vec<String> = profile
            .ports
            .iter()
            .filter(|p| p.role == Role::Dedicated)
            .map(default_ifname)
            .collect();
        dedicated_ifnames.sort();
        dedicated_ifnames.dedup();
        BootInput {
            dedicated_ifnames,
            metrics_tcp_ports,
        }
    }
}

/// One port of the box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Logical name from the hardware profile (`lan0`).
    pub name: String,
    /// The kernel's interface name, which rules match (`iifname`): names survive a device being
    /// re-created, interface indexes do not.
    pub ifname: String,
    pub role: Role,
}

/// The management plane: who may reach it, and on which TCP ports it listens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Management {
    /// Sources admitted to the management ports, and only on `lan` and `dedicated` ports: never on an
    /// `internet` port, whatever these prefixes say.
    pub prefixes: Vec<IpNet>,
    /// The HTTPS (mutual TLS) API.
    pub api_port: Option<u16>,
    /// The Prometheus scrape endpoint: opened on the `dedicated` ports, from any source there, and
    /// nowhere else — not to the management prefixes on the lan. The SOC scrapes from the
    /// government network (R3), and the boot ruleset opens exactly this before any policy is
    /// loaded; the two must agree, or a box would lose (or gain) its scraper when gatewayd starts.
    pub metrics_port: Option<u16>,
    /// SSH, when enabled on the box.
    pub ssh_port: Option<u16>,
}

impl Management {
    /// The policy's management plane: `[management]` prefixes, API and SSH ports, and the metrics
    /// port of `[telemetry.metrics] listen` (for the dedicated ports, see [`Management::metrics_port`]).
    /// Without a prefix nobody may reach the API or SSH, so neither port is opened.
    pub fn from_policy(policy: &Policy) -> Management {
        let m = &policy.management;
        let metrics_port = policy.telemetry.metrics.as_ref().map(|e| e.listen.port());
        if m.prefixes.is_empty() {
            return Management {
                metrics_port,
                ..Management::default()
            };
        }
        Management {
            prefixes: m.nets(),
            api_port: Some(m.api_port),
            metrics_port,
            ssh_port: m.ssh_port,
        }
    }

    /// The TCP ports opened to the management prefixes (API, SSH), sorted, without duplicates.
    pub fn tcp_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = [self.api_port, self.ssh_port]
            .into_iter()
            .flatten()
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// Services the gateway serves on its `lan` ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LanServices {
    /// DHCPv4 server (udp 67; requests come from 0.0.0.0, so no source check).
    pub dhcp: bool,
    /// DNS resolver (udp and tcp 53), for sources in the lan prefixes.
    pub dns: bool,
}

impl NftInput {
    /// The input for a validated policy on a box: ports and roles from the profile, prefixes from the
    /// policy's zones and shared systems, management as given (usually
    /// [`Management::from_policy`]). Masquerade is on for IPv4 and for the lan's unique-local IPv6 prefixes.
    ///
    /// A port's interface name is its `ifname` when the profile matches the device by name, and the
    /// port's logical name otherwise: the firmware image renames devices found by PCI address or
    /// driver to the port name (`images/lib/profile.py links`). A daemon that resolved the devices
    /// itself can overwrite [`Port::ifname`].
    pub fn from_policy(profile: &Profile, policy: &Policy, management: Management) -> NftInput {
        let ports = profile
            .ports
            .iter()
            .map(|spec| Port {
                name: spec.name.clone(),
                ifname: default_ifname(spec),
                role: spec.role,
            })
            .collect();
        let zone_prefixes = |role: Role| -> Vec<IpNet> {
            policy
                .zone(role)
                .map(|z| z.prefixes.iter().map(|p| p.value).collect())
                .unwrap_or_default()
        };
        let lan_prefixes = zone_prefixes(Role::Lan);
        let mut dedicated_prefixes = zone_prefixes(Role::Dedicated);
        dedicated_prefixes.extend(
            policy
                .systems
                .iter()
                .flat_map(|s| s.prefixes.iter().map(|p| p.value)),
        );
        let masquerade_v6 = lan_prefixes
            .iter()
            .filter_map(|p| match p {
                IpNet::V6(n) if is_unique_local(n) => Some(*n),
                _ => None,
            })
            .collect();
        NftInput {
            ports,
            lan_prefixes,
            dedicated_prefixes,
            management,
            masquerade: true,
            masquerade_v6,
            lan_services: LanServices::default(),
        }
    }

    /// Interface names of the ports with this role, sorted, without duplicates.
    pub fn ifnames(&self, role: Role) -> Vec<String> {
        let mut names: Vec<String> = self
            .ports
            .iter()
            .filter(|p| p.role == role)
            .map(|p| p.ifname.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn default_ifname(spec: &PortSpec) -> String {
    match &spec.device {
        DeviceMatch::Ifname(name) => name.clone(),
        DeviceMatch::Pci(_) | DeviceMatch::Driver { .. } => spec.name.clone(),
    }
}

/// fc00::/7 (RFC 4193).
fn is_unique_local(net: &Ipv6Net) -> bool {
    net.prefix_len() >= 7 && (net.network().segments()[0] & 0xfe00) == 0xfc00
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    #[test]
    fn unique_local() {
        let ula: Ipv6Net = "fd00:10::/64".parse().unwrap();
        let global: Ipv6Net = "2001:db8::/32".parse().unwrap();
        let wide: Ipv6Net = "fc00::/6".parse().unwrap();
        assert!(is_unique_local(&ula));
        assert!(!is_unique_local(&global));
        assert!(!is_unique_local(&wide));
    }

    #[test]
    fn management_from_policy() {
        let profile =
            gateway_policy::parse_profile(include_str!("../../../hw/lab-veth.toml"), "p".as_ref())
                .unwrap();
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/ward-office.toml"
        );
        let (policy, _) = gateway_policy::load_policy(root.as_ref(), &profile).unwrap();
        let m = Management::from_policy(&policy);
        assert_eq!(m.tcp_ports(), vec![22, 8443]);
        assert_eq!(m.metrics_port, Some(9100));
        assert_eq!(m.prefixes.len(), 3);
        let mut closed = policy.clone();
        closed.management.prefixes.clear();
        assert_eq!(
            Management::from_policy(&closed),
            Management {
                metrics_port: Some(9100),
                ..Management::default()
            },
            "no prefix: no API, no SSH; metrics stay for the SOC on the dedicated ports"
        );
    }

    #[test]
    fn management_ports_sorted_unique() {
        let m = Management {
            prefixes: vec![],
            api_port: Some(8443),
            metrics_port: Some(9100),
            ssh_port: Some(22),
        };
        assert_eq!(
            m.tcp_ports(),
            vec![22, 8443],
            "metrics are not a management-prefix port"
        );
        assert!(Management::default().tcp_ports().is_empty());
    }
}
