//! The shipped example policy compiled for the lab: a golden summary pins its image (hash and
//! counts), and the lab's traffic expectations hold on the image.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gateway_common::values::{GOVNET_DEDICATED, GOVNET_SHARED, PortRule};
use gateway_policy::prefixes::Prefix;
use gateway_policy::{MapImage, compile, diff};
use ipnet::{Ipv4Net, Ipv6Net};

fn ward_office() -> gateway_policy::Compiled {
    compile(
        &common::repo().join("configs/ward-office.toml"),
        &common::lab_profile(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn golden_summary() {
    let compiled = ward_office();
    let got = compiled.summary.to_string();
    let path = common::repo().join("gateway/policy/tests/golden/ward-office.summary");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "summary changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

#[test]
fn example_policy_has_no_warnings() {
    let compiled = ward_office();
    let w: Vec<String> = compiled.warnings.iter().map(ToString::to_string).collect();
    assert!(w.is_empty(), "warnings:\n{}", w.join("\n"));
}

#[test]
fn compile_is_deterministic() {
    let a = ward_office();
    let b = ward_office();
    assert_eq!(a.image, b.image);
    assert_eq!(a.image.hash(), b.image.hash());
    assert_eq!(a.summary, b.summary);
}

#[test]
fn diff_of_an_image_with_itself_is_empty() {
    let a = ward_office();
    let d = diff(&a.image, &a.image);
    assert!(d.is_empty(), "{d}");
}

fn blocked(img: &MapImage, addr: IpAddr) -> Option<u32> {
    match addr {
        IpAddr::V4(a) => img.block4_exact.get(&a).copied().or_else(|| {
            let n = u128::from(u32::from(a));
            img.block4_prefixes
                .iter()
                .find(|(p, _)| p.contains_addr(n))
                .map(|(_, f)| *f)
        }),
        IpAddr::V6(a) => img.block6_exact.get(&a).copied().or_else(|| {
            let n = u128::from(a);
            img.block6_prefixes
                .iter()
                .find(|(p, _)| p.contains_addr(n))
                .map(|(_, f)| *f)
        }),
    }
}

#[test]
fn lab_addresses() {
    let img = ward_office().image;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // The lab's Internet must stay reachable despite firehol_level1's bogons…
    for ok in [
        "203.0.113.10",
        "198.51.100.1",
        "198.51.100.254",
        "2001:db8:100::10",
        "10.10.0.5",
        "10.200.1.10",
        "172.16.0.1",
        "fd00:200:1::10",
    ] {
        assert_eq!(blocked(&img, ip(ok)), None, "{ok} must not be blocked");
    }
    // …its blocklisted host must be blocked by the policy's own list…
    assert_eq!(blocked(&img, ip("203.0.113.66")), Some(0));
    assert_eq!(blocked(&img, ip("2001:db8:bad::1")), Some(0));
    // …and the feeds still block what they list.
    let feed = |name: &str| img.feeds.iter().position(|f| f.name == name).unwrap() as u32;
    assert_eq!(
        blocked(&img, ip("77.90.185.20")),
        Some(feed("soc-indicators")),
        "earlier feed wins a duplicate"
    );
    assert_eq!(blocked(&img, ip("1.10.16.1")), Some(feed("spamhaus-drop")));
    assert_eq!(
        blocked(&img, ip("192.168.1.1")),
        Some(feed("firehol-level1")),
        "bogons outside the exceptions stay"
    );
    assert_eq!(blocked(&img, ip("10.99.0.1")), None, "excepted");
    assert_eq!(
        blocked(&img, ip("2001:db8:dead::1")),
        Some(feed("soc-indicators"))
    );
}

#[test]
fn lab_policy_maps() {
    let img = ward_office().image;
    let n4 = |s: &str| s.parse::<Ipv4Net>().unwrap();
    let n6 = |s: &str| s.parse::<Ipv6Net>().unwrap();
    assert_eq!(
        img.systems
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["national-population-db-api", "ward-document-system"]
    );
    assert_eq!(img.shared4.get(&n4("10.200.1.10/32")), Some(&0));
    assert_eq!(img.shared4.get(&n4("10.200.2.0/24")), Some(&1));
    assert_eq!(img.shared6.get(&n6("fd00:200:1::10/128")), Some(&0));
    assert_eq!(
        img.govnet4.get(&n4("10.200.0.0/16")),
        Some(&GOVNET_DEDICATED)
    );
    assert_eq!(img.govnet4.get(&n4("10.200.1.10/32")), Some(&GOVNET_SHARED));
    assert_eq!(
        img.govnet4.get(&n4("172.16.0.0/24")),
        Some(&GOVNET_DEDICATED)
    );
    assert_eq!(img.govnet6.len(), 2);
    assert_eq!(
        img.isolated4.iter().copied().collect::<Vec<_>>(),
        [n4("10.10.0.3/32")]
    );
    assert_eq!(
        img.isolated6.iter().copied().collect::<Vec<_>>(),
        [n6("fd00:10::3/128")]
    );
    assert_eq!(
        img.allow4.get(&(0, n4("10.10.0.0/24"))),
        Some(&vec![
            PortRule::new(1, 0, 65535),
            PortRule::new(6, 443, 443),
            PortRule::new(6, 8443, 8443)
        ])
    );
    assert_eq!(
        img.allow6.get(&(0, n6("fd00:10::/64"))),
        Some(&vec![
            PortRule::new(6, 443, 443),
            PortRule::new(6, 8443, 8443),
            PortRule::new(58, 0, 65535)
        ])
    );
    assert_eq!(
        img.allow4.get(&(1, n4("10.10.0.0/25"))),
        Some(&vec![PortRule::new(6, 80, 80), PortRule::new(6, 443, 443)])
    );
    assert_eq!(img.allow4.len(), 2);
    assert_eq!(img.allow6.len(), 1, "ward-document-system is IPv4 only");
    // Two domain feeds (soc-domains, ransomware-domains), answered with NXDOMAIN.
    assert_eq!(
        img.settings_flags,
        gateway_common::values::SETTING_DNS_INSPECT | gateway_common::values::SETTING_DNS_NXDOMAIN
    );
    assert_eq!(
        img.domain_feeds
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["soc-domains", "ransomware-domains"]
    );
    let _ = (Ipv4Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
}
