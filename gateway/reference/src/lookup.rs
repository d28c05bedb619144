//! Lookups in a map image, with the data path's semantics.
//!
//! "x in P" means some prefix of P contains x; where a value is used (shared systems, allow sets) it is
//! the value of the LONGEST containing prefix. Implemented the obvious way: for every prefix length
//! from the longest to the shortest, truncate the address to that length and probe the map. The image
//! holds prefixes in canonical form (host bits zero, as `ipnet`'s `trunc()` gives and as the compiler
//! writes them); a key with host bits set would never be probed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gateway_common::values::PortRule;
use gateway_policy::image::{FeedId, MapImage, SystemId};
use ipnet::{Ipv4Net, Ipv6Net};

/// The first `Some` of `probe(addr/len)` for `len` = 32 down to 0.
pub fn longest4<T>(addr: Ipv4Addr, probe: impl Fn(&Ipv4Net) -> Option<T>) -> Option<T> {
    (0..=32u8)
        .rev()
        .find_map(|len| probe(&Ipv4Net::new_assert(addr, len).trunc()))
}

/// The first `Some` of `probe(addr/len)` for `len` = 128 down to 0.
pub fn longest6<T>(addr: Ipv6Addr, probe: impl Fn(&Ipv6Net) -> Option<T>) -> Option<T> {
    (0..=128u8)
        .rev()
        .find_map(|len| probe(&Ipv6Net::new_assert(addr, len).trunc()))
}

/// The feed that blocks `addr`: its exact entry, else the longest blocked prefix containing it.
pub fn blocked(image: &MapImage, addr: IpAddr) -> Option<FeedId> {
    match addr {
        IpAddr::V4(a) => image
            .block4_exact
            .get(&a)
            .copied()
            .or_else(|| longest4(a, |n| image.block4_prefixes.get(n).copied())),
        IpAddr::V6(a) => image
            .block6_exact
            .get(&a)
            .copied()
            .or_else(|| longest6(a, |n| image.block6_prefixes.get(n).copied())),
    }
}

/// Whether `addr` lies in an isolated (R11) prefix.
pub fn isolated(image: &MapImage, addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => longest4(a, |n| image.isolated4.contains(n).then_some(())).is_some(),
        IpAddr::V6(a) => longest6(a, |n| image.isolated6.contains(n).then_some(())).is_some(),
    }
}

/// The govnet kind (`GOVNET_SHARED` / `GOVNET_DEDICATED`) of the longest govnet prefix containing `addr`.
pub fn govnet(image: &MapImage, addr: IpAddr) -> Option<u32> {
    match addr {
        IpAddr::V4(a) => longest4(a, |n| image.govnet4.get(n).copied()),
        IpAddr::V6(a) => longest6(a, |n| image.govnet6.get(n).copied()),
    }
}

/// The shared system of the longest shared prefix containing `addr`.
pub fn shared(image: &MapImage, addr: IpAddr) -> Option<SystemId> {
    match addr {
        IpAddr::V4(a) => longest4(a, |n| image.shared4.get(n).copied()),
        IpAddr::V6(a) => longest6(a, |n| image.shared6.get(n).copied()),
    }
}

/// The rules of the longest source prefix of `system` containing `src` (already folded by the
/// compiler, so this entry alone decides).
pub fn allow(image: &MapImage, system: SystemId, src: IpAddr) -> Option<&[PortRule]> {
    match src {
        IpAddr::V4(a) => longest4(a, |n| image.allow4.get(&(system, *n)).map(Vec::as_slice)),
        IpAddr::V6(a) => longest6(a, |n| image.allow6.get(&(system, *n)).map(Vec::as_slice)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_common::maps::{IPPROTO_TCP, IPPROTO_UDP};
    use gateway_common::values::{GOVNET_DEDICATED, GOVNET_SHARED};

    fn a4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().expect("test address"))
    }
    fn a6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().expect("test address"))
    }
    fn n4(s: &str) -> Ipv4Net {
        s.parse().expect("test prefix")
    }
    fn n6(s: &str) -> Ipv6Net {
        s.parse().expect("test prefix")
    }

    fn image() -> MapImage {
        let mut i = MapImage::default();
        i.block4_exact.insert("192.0.2.7".parse().expect("addr"), 0);
        i.block4_prefixes.insert(n4("198.51.100.0/24"), 1);
        i.block4_prefixes.insert(n4("0.0.0.0/0"), 2);
        i.block6_exact
            .insert("2001:db8::7".parse().expect("addr"), 0);
        i.block6_prefixes.insert(n6("2001:db8:bad::/48"), 1);
        i.isolated4.insert(n4("10.0.0.16/28"));
        i.isolated6.insert(n6("fd00::10/124"));
        i.shared4.insert(n4("10.20.0.0/16"), 0);
        i.shared4.insert(n4("10.20.1.0/24"), 1);
        i.shared4.insert(n4("10.20.1.9/32"), 2);
        i.shared6.insert(n6("fd20::/32"), 0);
        i.shared6.insert(n6("fd20:1::/48"), 1);
        i.govnet4.insert(n4("10.20.0.0/16"), GOVNET_SHARED);
        i.govnet4.insert(n4("10.0.0.0/8"), GOVNET_DEDICATED);
        i.govnet6.insert(n6("fd20::/32"), GOVNET_SHARED);
        i.allow4.insert(
            (1, n4("10.0.0.0/24")),
            vec![PortRule::new(IPPROTO_TCP, 443, 443)],
        );
        i.allow4.insert(
            (1, n4("10.0.0.5/32")),
            vec![
                PortRule::new(IPPROTO_TCP, 443, 443),
                PortRule::new(IPPROTO_UDP, 53, 53),
            ],
        );
        i.allow6.insert(
            (0, n6("fd00::/64")),
            vec![PortRule::new(IPPROTO_TCP, 22, 22)],
        );
        i
    }

    #[test]
    fn blocked_exact_then_longest_prefix() {
        let mut i = image();
        assert_eq!(blocked(&i, a4("192.0.2.7")), Some(0));
        assert_eq!(blocked(&i, a4("198.51.100.200")), Some(1));
        assert_eq!(blocked(&i, a4("1.2.3.4")), Some(2));
        i.block4_prefixes.remove(&n4("0.0.0.0/0"));
        assert_eq!(blocked(&i, a4("1.2.3.4")), None);
        assert_eq!(blocked(&i, a4("192.0.2.8")), None);
        assert_eq!(blocked(&i, a6("2001:db8::7")), Some(0));
        assert_eq!(blocked(&i, a6("2001:db8:bad:1::1")), Some(1));
        assert_eq!(blocked(&i, a6("2001:db8::8")), None);
        // Families never mix.
        assert_eq!(blocked(&i, a6("::ffff:192.0.2.7")), None);
    }

    #[test]
    fn membership_sets() {
        let i = image();
        assert!(isolated(&i, a4("10.0.0.16")));
        assert!(isolated(&i, a4("10.0.0.31")));
        assert!(!isolated(&i, a4("10.0.0.32")));
        assert!(isolated(&i, a6("fd00::1f")));
        assert!(!isolated(&i, a6("fd00::20")));
        assert_eq!(govnet(&i, a4("10.20.3.3")), Some(GOVNET_SHARED));
        assert_eq!(govnet(&i, a4("10.9.3.3")), Some(GOVNET_DEDICATED));
        assert_eq!(govnet(&i, a4("11.0.0.1")), None);
        assert_eq!(govnet(&i, a6("fd20::1")), Some(GOVNET_SHARED));
        assert_eq!(govnet(&i, a6("fd21::1")), None);
    }

    #[test]
    fn shared_uses_the_longest_prefix() {
        let i = image();
        assert_eq!(shared(&i, a4("10.20.9.9")), Some(0));
        assert_eq!(shared(&i, a4("10.20.1.8")), Some(1));
        assert_eq!(shared(&i, a4("10.20.1.9")), Some(2));
        assert_eq!(shared(&i, a4("10.21.0.1")), None);
        assert_eq!(shared(&i, a6("fd20:1::5")), Some(1));
        assert_eq!(shared(&i, a6("fd20:0:2::5")), Some(0));
    }

    #[test]
    fn allow_uses_the_longest_source_prefix_of_the_system() {
        let i = image();
        assert_eq!(allow(&i, 1, a4("10.0.0.5")).map(<[_]>::len), Some(2));
        assert_eq!(allow(&i, 1, a4("10.0.0.6")).map(<[_]>::len), Some(1));
        assert_eq!(allow(&i, 1, a4("10.0.1.6")), None);
        assert_eq!(
            allow(&i, 0, a4("10.0.0.5")),
            None,
            "another system's entries never match"
        );
        assert_eq!(allow(&i, 0, a6("fd00::99")).map(<[_]>::len), Some(1));
        assert_eq!(allow(&i, 1, a6("fd00::99")), None);
    }
}
