//! What the compiler puts into the image: blocklist merge and attribution, exceptions, allow-rule
//! folding, protocol numbers, govnet, settings, and the warnings an admin gets.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::path::Path;

use gateway_common::values::{GOVNET_DEDICATED, GOVNET_SHARED, PortRule, SETTING_DROP_FRAGMENTS};
use gateway_policy::{Compiled, compile_str, load_profile};
use ipnet::{Ipv4Net, Ipv6Net};

use common::{BASE, compile_in, edit};

fn n4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}
fn n6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

/// BASE plus feed files written into a temp dir.
fn with_feeds(
    extra_policy: &str,
    feeds: &[(&str, &str, &str, &str)],
) -> (tempfile::TempDir, Result<Compiled, String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("{BASE}{extra_policy}");
    for (name, file, format, content) in feeds {
        std::fs::write(dir.path().join(file), content).unwrap();
        text.push_str(&format!(
            "\n[[feed]]\nname = \"{name}\"\npath = \"{file}\"\nformat = \"{format}\"\n"
        ));
    }
    let res = compile_in(dir.path(), &text);
    (dir, res)
}

fn warnings(c: &Compiled) -> Vec<String> {
    c.warnings
        .iter()
        .map(|w| format!("{}: {}: {}", w.line, w.field, w.message))
        .collect()
}

#[test]
fn blocklist_merge_split_and_attribution() {
    let (_d, c) = with_feeds(
        "",
        &[
            (
                "a",
                "a.txt",
                "plain",
                "1.2.3.4\n1.2.3.4\n5.6.0.0/16\n5.6.7.8\n2001:db8:1::/48\n2001:db8:1::1\n2001:db8:2::1\n",
            ),
            (
                "b",
                "b.netset",
                "netset",
                "# header\n5.0.0.0/8\n1.2.3.4\n9.9.9.9/32\n203.0.113.66\n",
            ),
        ],
    );
    let c = c.unwrap();
    let img = &c.image;
    assert_eq!(
        img.feeds
            .iter()
            .map(|f| (f.name.as_str(), f.entries))
            .collect::<Vec<_>>(),
        [("policy", 1), ("a", 3), ("b", 2)]
    );
    // 5.0.0.0/8 (feed b) covers a's 5.6.0.0/16 and 5.6.7.8: the cover wins.
    assert_eq!(
        img.block4_prefixes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>(),
        [("5.0.0.0/8".into(), 2)]
    );
    // Exact duplicates: the lowest feed id wins (policy before a before b).
    let exact: Vec<(String, u32)> = img
        .block4_exact
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(
        exact,
        [
            ("1.2.3.4".into(), 1),
            ("9.9.9.9".into(), 2),
            ("203.0.113.66".into(), 0)
        ]
    );
    assert_eq!(
        img.block6_prefixes.keys().copied().collect::<Vec<_>>(),
        [n6("2001:db8:1::/48")]
    );
    assert_eq!(
        img.block6_exact
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["2001:db8:2::1"]
    );
    assert_eq!(c.summary.feeds[1].read, 7);
    assert_eq!(c.summary.feeds[2].read, 4);
}

#[test]
fn exceptions_are_carved_from_feeds_not_from_the_policy() {
    let (_d, c) = with_feeds(
        "except = [\"203.0.113.0/24\", \"10.0.0.0/8\", \"2001:db8:100::/64\"]\n",
        &[(
            "bogons",
            "b.netset",
            "netset",
            "10.0.0.0/8\n203.0.113.0/24\n192.168.0.0/16\n2001:db8::/32\n",
        )],
    );
    let c = c.unwrap();
    let img = &c.image;
    assert!(!img.block4_prefixes.contains_key(&n4("10.0.0.0/8")));
    assert!(
        !img.block4_prefixes
            .keys()
            .any(|p| p.contains(&n4("203.0.113.0/24")) || n4("203.0.113.0/24").contains(p))
    );
    assert_eq!(
        img.block4_exact.get(&"203.0.113.66".parse().unwrap()),
        Some(&0),
        "the policy's own entry stays"
    );
    assert!(img.block4_prefixes.contains_key(&n4("192.168.0.0/16")));
    // 2001:db8::/32 minus a /64: 32 prefixes, /33 … /64.
    assert_eq!(img.block6_prefixes.len(), 32);
    assert!(
        img.block6_prefixes
            .keys()
            .all(|p| !p.contains(&n6("2001:db8:100::/64")) && !n6("2001:db8:100::/64").contains(p))
    );
    assert!(img.block6_prefixes.contains_key(&n6("2001:db8:8000::/33")));
    assert_eq!(c.summary.feeds[1].excepted, 3);
    assert!(c.warnings.is_empty(), "{:?}", warnings(&c));
}

#[test]
fn blocklist_covering_own_networks_warns() {
    let (_d, c) = with_feeds(
        "",
        &[("bogons", "b.netset", "netset", "# fullbogons\n10.0.0.0/8\n")],
    );
    let c = c.unwrap();
    assert_eq!(
        warnings(&c),
        [
            "7: zones.lan.prefixes: lan prefix 10.10.0.0/24 is blocked by 10.0.0.0/8 from feed \"bogons\" (b.netset:2); traffic to it will be dropped — add an exception to [blocklist] except",
            "11: zones.dedicated.prefixes: dedicated prefix 10.200.0.0/16 is blocked by 10.0.0.0/8 from feed \"bogons\" (b.netset:2); traffic to it will be dropped — add an exception to [blocklist] except",
            "18: shared_system.prefixes: shared system \"db\" 10.200.1.10/32 is blocked by 10.0.0.0/8 from feed \"bogons\" (b.netset:2); traffic to it will be dropped — add an exception to [blocklist] except",
        ]
    );
    // The policy's own list is checked too.
    let c = common::compile_text(&edit(
        BASE,
        "[\"203.0.113.66/32\"]",
        "[\"fd00:200:1::10/128\"]",
    ))
    .unwrap();
    assert_eq!(
        warnings(&c),
        [
            "18: shared_system.prefixes: shared system \"db\" fd00:200:1::10/128 is blocked by fd00:200:1::10/128 from the policy's [blocklist] (line 30); traffic to it will be dropped — add an exception to [blocklist] except"
        ]
    );
}

#[test]
fn feed_warnings_reach_the_compiled_policy() {
    let (d, c) = with_feeds("", &[("sloppy", "s.txt", "plain", "198.18.7.1/24\n")]);
    let c = c.unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(
        c.warnings[0].to_string(),
        format!(
            "{}:1: entry: \"198.18.7.1/24\" has host bits set; using 198.18.7.0/24",
            d.path().join("s.txt").display()
        )
    );
    assert!(c.image.block4_prefixes.contains_key(&n4("198.18.7.0/24")));
    assert_eq!(c.summary.feeds[1].normalised, 1);
}

#[test]
fn allow_rules_fold_covering_sources_and_pick_protocol_numbers() {
    let text = edit(
        BASE,
        "ports = [443, \"8000-8080\"]\n",
        "ports = [443, \"8000-8080\"]\n\n[[shared_system.allow]]\nfrom = [\"10.10.0.0/25\", \"10.10.0.7/32\", \"fd00:10::/64\"]\nprotocol = \"icmp\"\n\n[[shared_system.allow]]\nfrom = [\"10.10.0.7/32\"]\nprotocol = \"udp\"\nports = [53, 54, \"55-60\"]\n",
    );
    let c = common::compile_text(&text).unwrap();
    let img = &c.image;
    let tcp = [PortRule::new(6, 443, 443), PortRule::new(6, 8000, 8080)];
    assert_eq!(img.allow4[&(0, n4("10.10.0.0/24"))], tcp.to_vec());
    assert_eq!(
        img.allow4[&(0, n4("10.10.0.0/25"))],
        vec![PortRule::new(1, 0, 65535), tcp[0], tcp[1]]
    );
    assert_eq!(
        img.allow4[&(0, n4("10.10.0.7/32"))],
        vec![
            PortRule::new(1, 0, 65535),
            tcp[0],
            tcp[1],
            PortRule::new(17, 53, 60)
        ],
        "own rules + the /25's + the /24's; adjacent ports merged"
    );
    assert_eq!(
        img.allow6[&(0, n6("fd00:10::/64"))],
        vec![tcp[0], tcp[1], PortRule::new(58, 0, 65535)]
    );
    // The longest match alone decides: every admitted (proto, port) of a cover is admitted by the covered.
    for (k, rules) in &img.allow4 {
        for (k2, cover) in &img.allow4 {
            if k.0 == k2.0 && k2.1.contains(&k.1) {
                for r in cover {
                    assert!(rules.iter().any(|x| x.admits(r.proto, Some(r.port_lo))
                        && x.admits(r.proto, Some(r.port_hi))));
                }
            }
        }
    }
}

#[test]
fn any_protocol_and_family_mismatch() {
    let text = edit(
        BASE,
        "prefixes = [\"10.200.1.10/32\", \"fd00:200:1::10/128\"]",
        "prefixes = [\"10.200.1.10/32\"]",
    );
    let text = edit(
        &text,
        "protocol = \"tcp\"\nports = [443, \"8000-8080\"]",
        "protocol = \"any\"",
    );
    let c = common::compile_text(&text).unwrap();
    assert_eq!(
        c.image.allow4[&(0, n4("10.10.0.0/24"))],
        vec![PortRule::new(0, 0, 65535)]
    );
    assert!(c.image.allow6.is_empty());
    assert_eq!(
        warnings(&c),
        [
            "21: shared_system.allow.from: fd00:10::/64 is IPv6 but shared system \"db\" has no IPv6 prefixes; it admits nothing"
        ]
    );
}

#[test]
fn govnet_isolated_and_settings() {
    let text = edit(
        BASE,
        "prefixes = [\"10.200.1.10/32\", ",
        "prefixes = [\"10.200.1.10/32\", \"10.201.0.0/16\", ",
    );
    let text = format!("{text}\n[defaults]\nfragments = \"drop\"\n");
    let c = common::compile_text(&text).unwrap();
    let img = &c.image;
    assert_eq!(
        img.govnet4
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>(),
        [
            ("10.200.0.0/16".to_string(), GOVNET_DEDICATED),
            ("10.200.1.10/32".into(), GOVNET_SHARED),
            ("10.201.0.0/16".into(), GOVNET_SHARED)
        ]
    );
    assert_eq!(
        img.govnet6.get(&n6("fd00:200::/32")),
        Some(&GOVNET_DEDICATED)
    );
    assert_eq!(
        img.govnet6.get(&n6("fd00:200:1::10/128")),
        Some(&GOVNET_SHARED)
    );
    assert_eq!(img.shared4.get(&n4("10.201.0.0/16")), Some(&0));
    assert_eq!(img.isolated4.len(), 1);
    assert_eq!(img.settings_flags, SETTING_DROP_FRAGMENTS);
}

#[test]
fn other_warnings() {
    // A system without rules, an isolated host outside the lan.
    let text = edit(
        BASE,
        "\n[[shared_system.allow]]\nfrom = [\"10.10.0.0/24\", \"fd00:10::/64\"]\nprotocol = \"tcp\"\nports = [443, \"8000-8080\"]\n",
        "",
    );
    let text = edit(
        &text,
        "hosts = [\"10.10.0.3/32\"]",
        "hosts = [\"10.10.9.3/32\"]",
    );
    let c = common::compile_text(&text).unwrap();
    assert_eq!(
        warnings(&c),
        [
            "17: shared_system.allow: shared system \"db\" has no allow rules: every packet to it is dropped (not_allowed)",
            "22: isolated.hosts: 10.10.9.3/32 is outside every lan prefix; it is isolated only if it sends from the lan port",
        ]
    );
    assert!(c.image.allow4.is_empty());
    // A profile port the policy does not list.
    let minipc = load_profile(&common::repo().join("hw/minipc-i226-x86_64.toml")).unwrap();
    let c = compile_str(BASE, Path::new("p.toml"), &minipc).unwrap();
    assert_eq!(
        warnings(&c),
        [
            "5: zones.lan.ports: profile \"minipc-i226-x86_64\" port \"lan1\" (driver igc #3) is not listed; it still gets the lan role"
        ]
    );
}

#[test]
fn the_example_policy_fits_every_shipped_profile() {
    let policy = common::repo().join("configs/ward-office.toml");
    for name in [
        "lab-veth",
        "qemu-x86_64",
        "arm64-dualport",
        "minipc-i226-x86_64",
    ] {
        let profile = load_profile(&common::repo().join(format!("hw/{name}.toml"))).unwrap();
        let c =
            gateway_policy::compile(&policy, &profile).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.summary.profile, name);
    }
}
