//! The port map and the route oracle (spec §2).

use std::collections::BTreeMap;
use std::net::IpAddr;

use gateway_common::Role;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Where the kernel would send a packet: the data path's reading of `bpf_fib_lookup`.
///
/// `Port(ifindex)` for `BPF_FIB_LKUP_RET_SUCCESS` (0) and `BPF_FIB_LKUP_RET_NO_NEIGH` (7), `Local` for
/// `BPF_FIB_LKUP_RET_NOT_FWDED` (4, addressed to the gateway itself), `Unroutable` for every other code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Egress {
    Port(u32),
    Local,
    Unroutable,
}

/// The route oracle: the FIB lookup the data path makes for a packet arriving on `ingress_ifindex`.
pub trait Routes {
    fn egress(&self, ingress_ifindex: u32, src: IpAddr, dst: IpAddr) -> Egress;
}

/// Any `Fn(ingress_ifindex, src, dst) -> Egress` is a route oracle.
impl<F> Routes for F
where
    F: Fn(u32, IpAddr, IpAddr) -> Egress,
{
    fn egress(&self, ingress_ifindex: u32, src: IpAddr, dst: IpAddr) -> Egress {
        self(ingress_ifindex, src, dst)
    }
}

/// A longest-prefix route table on the destination address, v4 and v6, with a default for addresses
/// no prefix covers. Ingress port and source do not matter (no policy routing), as in the labs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRoutes {
    v4: BTreeMap<Ipv4Net, Egress>,
    v6: BTreeMap<Ipv6Net, Egress>,
    default: Egress,
}

impl StaticRoutes {
    /// An empty table: every destination gets `default`.
    pub fn new(default: Egress) -> Self {
        StaticRoutes {
            v4: BTreeMap::new(),
            v6: BTreeMap::new(),
            default,
        }
    }

    /// Adds (or replaces) the route for `net` (host bits are ignored), builder style.
    #[must_use]
    pub fn route(mut self, net: impl Into<IpNet>, egress: Egress) -> Self {
        self.insert(net.into(), egress);
        self
    }

    /// Adds (or replaces) the route for `net` (host bits are ignored); returns the replaced egress.
    pub fn insert(&mut self, net: IpNet, egress: Egress) -> Option<Egress> {
        match net.trunc() {
            IpNet::V4(n) => self.v4.insert(n, egress),
            IpNet::V6(n) => self.v6.insert(n, egress),
        }
    }

    /// The egress of the longest prefix containing `dst`, else the default.
    pub fn lookup(&self, dst: IpAddr) -> Egress {
        let hit = match dst {
            IpAddr::V4(a) => crate::lookup::longest4(a, |n| self.v4.get(n).copied()),
            IpAddr::V6(a) => crate::lookup::longest6(a, |n| self.v6.get(n).copied()),
        };
        hit.unwrap_or(self.default)
    }

    /// The default egress.
    pub fn default_egress(&self) -> Egress {
        self.default
    }

    /// Every explicit route, v4 first, in prefix order (for a lab that programs the same table).
    pub fn entries(&self) -> impl Iterator<Item = (IpNet, Egress)> + '_ {
        let v4 = self.v4.iter().map(|(n, e)| (IpNet::V4(*n), *e));
        let v6 = self.v6.iter().map(|(n, e)| (IpNet::V6(*n), *e));
        v4.chain(v6)
    }
}

impl Routes for StaticRoutes {
    fn egress(&self, _ingress_ifindex: u32, _src: IpAddr, dst: IpAddr) -> Egress {
        self.lookup(dst)
    }
}

/// The port map: ifindex → role, as the loader writes it from the hardware profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ports(pub BTreeMap<u32, Role>);

impl Ports {
    pub fn new() -> Self {
        Ports(BTreeMap::new())
    }

    /// Adds a port, builder style.
    #[must_use]
    pub fn with(mut self, ifindex: u32, role: Role) -> Self {
        self.0.insert(ifindex, role);
        self
    }

    /// The role of a port, `None` if the port is not in the map.
    pub fn role(&self, ifindex: u32) -> Option<Role> {
        self.0.get(&ifindex).copied()
    }

    /// The role of the port a packet leaves by; `None` for `Local`, `Unroutable` and unknown ports.
    pub fn egress_role(&self, egress: Egress) -> Option<Role> {
        match egress {
            Egress::Port(ifindex) => self.role(ifindex),
            Egress::Local | Egress::Unroutable => None,
        }
    }
}

impl FromIterator<(u32, Role)> for Ports {
    fn from_iter<I: IntoIterator<Item = (u32, Role)>>(iter: I) -> Self {
        Ports(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    #[test]
    fn static_routes_pick_the_longest_prefix() {
        let r = StaticRoutes::new(Egress::Port(3))
            .route(net("10.0.0.0/8"), Egress::Port(2))
            .route(net("10.1.0.0/16"), Egress::Port(1))
            .route(net("10.1.2.3/32"), Egress::Local)
            .route(net("fd00::/8"), Egress::Port(2))
            .route(net("fd00:1::/32"), Egress::Unroutable);
        assert_eq!(r.lookup(ip("10.9.9.9")), Egress::Port(2));
        assert_eq!(r.lookup(ip("10.1.9.9")), Egress::Port(1));
        assert_eq!(r.lookup(ip("10.1.2.3")), Egress::Local);
        assert_eq!(r.lookup(ip("192.0.2.1")), Egress::Port(3));
        assert_eq!(r.lookup(ip("fd00::1")), Egress::Port(2));
        assert_eq!(r.lookup(ip("fd00:1::1")), Egress::Unroutable);
        assert_eq!(r.lookup(ip("2001:db8::1")), Egress::Port(3));
        assert_eq!(r.egress(7, ip("10.0.0.1"), ip("10.1.2.3")), Egress::Local);
    }

    #[test]
    fn static_routes_ignore_host_bits_and_list_entries() {
        let r = StaticRoutes::new(Egress::Unroutable).route(net("10.1.2.3/16"), Egress::Port(1));
        assert_eq!(r.lookup(ip("10.1.200.1")), Egress::Port(1));
        let entries: Vec<_> = r.entries().collect();
        assert_eq!(entries, vec![(net("10.1.0.0/16"), Egress::Port(1))]);
        assert_eq!(r.default_egress(), Egress::Unroutable);
    }

    #[test]
    fn default_route_prefix_overrides_default() {
        let r = StaticRoutes::new(Egress::Unroutable)
            .route(
                Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0),
                Egress::Port(9),
            )
            .route(
                Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 0),
                Egress::Port(8),
            );
        assert_eq!(r.lookup(ip("198.51.100.1")), Egress::Port(9));
        assert_eq!(r.lookup(ip("2001:db8::1")), Egress::Port(8));
    }

    #[test]
    fn closures_are_oracles() {
        let oracle = |ingress: u32, _src: IpAddr, _dst: IpAddr| Egress::Port(ingress + 1);
        assert_eq!(
            oracle.egress(4, ip("10.0.0.1"), ip("10.0.0.2")),
            Egress::Port(5)
        );
    }

    #[test]
    fn ports_roles() {
        let p = Ports::new().with(2, Role::Lan).with(3, Role::Dedicated);
        assert_eq!(p.role(2), Some(Role::Lan));
        assert_eq!(p.role(9), None);
        assert_eq!(p.egress_role(Egress::Port(3)), Some(Role::Dedicated));
        assert_eq!(p.egress_role(Egress::Port(9)), None);
        assert_eq!(p.egress_role(Egress::Local), None);
        assert_eq!(p.egress_role(Egress::Unroutable), None);
        let q: Ports = [(2, Role::Lan), (3, Role::Dedicated)].into_iter().collect();
        assert_eq!(p, q);
    }
}
