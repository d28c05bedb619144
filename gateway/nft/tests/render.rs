//! The renderer without a kernel: golden JSON for the shipped example policy on the lab profile and
//! for the boot ruleset, and properties every rendered ruleset must have.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test code

use std::path::{Path, PathBuf};

use gateway_common::Role;
use gateway_nft::nftables::expr::{Expression, MetaKey, NamedExpression};
use gateway_nft::nftables::schema::{NfCmd, NfListObject, NfObject, Nftables, Rule};
use gateway_nft::nftables::stmt::Statement;
use gateway_nft::render::{chain, comment, set};
use gateway_nft::{BootInput, LanServices, Management, NftInput, render, render_boot, to_json};
use gateway_policy::{load_policy, load_profile};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Management as the golden file assumes it (the policy has no `[management]` section yet).
fn management() -> Management {
    Management {
        prefixes: vec![
            "10.10.0.0/28".parse().unwrap(),
            "fd00:10::/124".parse().unwrap(),
        ],
        api_port: Some(8443),
        metrics_port: Some(9464),
        ssh_port: Some(22),
    }
}

fn ward_office_on(profile: &str) -> NftInput {
    let profile = load_profile(&repo().join("hw").join(profile)).unwrap();
    let (policy, _) = load_policy(&repo().join("configs/ward-office.toml"), &profile)
        .unwrap_or_else(|e| panic!("{e}"));
    NftInput::from_policy(&profile, &policy, management())
}

/// The image's boot input on a profile: metrics on 9100 (`gateway-services.nft`).
fn boot_on(profile: &str) -> BootInput {
    let profile = load_profile(&repo().join("hw").join(profile)).unwrap();
    BootInput::from_profile(&profile, vec![9100])
}

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "{} changed; if intended, rerun with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
}

#[test]
fn golden_ward_office_on_lab_profile() {
    golden(
        "ward-office.lab-veth.json",
        &to_json(&render(&ward_office_on("lab-veth.toml"))).unwrap(),
    );
}

#[test]
fn golden_boot() {
    golden(
        "boot.lab-veth.json",
        &to_json(&render_boot(&boot_on("lab-veth.toml"))).unwrap(),
    );
}

#[test]
fn input_from_policy_and_profile() {
    let input = ward_office_on("lab-veth.toml");
    let names: Vec<(&str, &str, Role)> = input
        .ports
        .iter()
        .map(|p| (p.name.as_str(), p.ifname.as_str(), p.role))
        .collect();
    assert_eq!(
        names,
        [
            ("lan0", "lan0", Role::Lan),
            ("ded0", "ded0", Role::Dedicated),
            ("inet0", "inet0", Role::Internet)
        ]
    );
    let nets = |v: &[ipnet::IpNet]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(nets(&input.lan_prefixes), ["10.10.0.0/24", "fd00:10::/64"]);
    // The dedicated zone and every shared system (which need not lie inside the zone).
    assert_eq!(
        nets(&input.dedicated_prefixes),
        [
            "10.200.0.0/16",
            "172.16.0.0/24",
            "fd00:200::/32",
            "10.200.1.10/32",
            "fd00:200:1::10/128",
            "10.200.2.0/24"
        ]
    );
    assert!(input.masquerade);
    // The lan's unique-local prefix is masqueraded (it cannot be routed on the Internet).
    assert_eq!(
        input
            .masquerade_v6
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["fd00:10::/64"]
    );
    assert_eq!(input.lan_services, LanServices::default());

    // A profile that finds devices by PCI address: the image renames them to the port names.
    let qemu = ward_office_on("qemu-x86_64.toml");
    assert!(qemu.ports.iter().all(|p| p.ifname == p.name));
}

#[test]
fn render_is_deterministic_and_ignores_input_order() {
    let a = ward_office_on("lab-veth.toml");
    assert_eq!(render(&a), render(&a));
    let mut b = a.clone();
    b.ports.reverse();
    b.lan_prefixes.reverse();
    b.dedicated_prefixes.reverse();
    b.management.prefixes.reverse();
    // Duplicates and covered prefixes change nothing either.
    b.management.prefixes.push("10.10.0.8/29".parse().unwrap());
    b.dedicated_prefixes.push("10.200.3.0/24".parse().unwrap());
    assert_eq!(to_json(&render(&a)).unwrap(), to_json(&render(&b)).unwrap());
}

fn objects(r: &Nftables<'static>) -> Vec<NfObject<'static>> {
    r.objects.to_vec()
}

/// The batch replaces `inet gateway` and touches nothing else.
#[test]
fn batch_replaces_our_table_only() {
    for r in [
        render(&ward_office_on("lab-veth.toml")),
        render_boot(&boot_on("lab-veth.toml")),
    ] {
        let objs = objects(&r);
        assert!(matches!(
            &objs[0],
            NfObject::CmdObject(NfCmd::Add(NfListObject::Table(t))) if t.name == "gateway"
        ));
        assert!(matches!(
            &objs[1],
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(t))) if t.name == "gateway"
        ));
        assert!(matches!(
            &objs[2],
            NfObject::CmdObject(NfCmd::Add(NfListObject::Table(t))) if t.name == "gateway"
        ));
        for o in &objs[3..] {
            let NfObject::CmdObject(NfCmd::Add(obj)) = o else {
                panic!("after the table swap only additions: {o:?}");
            };
            let table = match obj {
                NfListObject::Set(s) => &s.table,
                NfListObject::Chain(c) => &c.table,
                NfListObject::Rule(r) => &r.table,
                other => panic!("unexpected object {other:?}"),
            };
            assert_eq!(table, "gateway");
        }
        let json = to_json(&r).unwrap();
        assert!(!json.contains("\"flush\""), "no flush of anything");
        assert!(json.matches("\"family\": \"inet\"").count() > 3);
        assert!(!json.contains("\"family\": \"ip\""));
    }
}

fn rules(r: &Nftables<'static>, chain_name: &str) -> Vec<Rule<'static>> {
    objects(r)
        .into_iter()
        .filter_map(|o| match o {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(rule)))
                if rule.chain == chain_name =>
            {
                Some(rule)
            }
            _ => None,
        })
        .collect()
}

fn matches_iifname_set(rule: &Rule<'_>, name: &str) -> bool {
    rule.expr.iter().any(|s| {
        matches!(s, Statement::Match(m)
            if m.left == Expression::Named(NamedExpression::Meta(gateway_nft::nftables::expr::Meta { key: MetaKey::Iifname }))
            && m.right == Expression::String(format!("@{name}").into()))
    })
}

fn mentions(rule: &Rule<'_>, what: &str) -> bool {
    serde_json::to_string(&rule.expr).unwrap().contains(what)
}

fn is_accept(rule: &Rule<'_>) -> bool {
    rule.expr.iter().any(|s| matches!(s, Statement::Accept(_)))
}

/// The management plane: reached only through lan/dedicated ports; the internet port is closed
/// before any rule that serves TCP.
#[test]
fn management_never_on_the_internet_port() {
    let input = ward_office_on("lab-veth.toml");
    let r = render(&input);
    let input_rules = rules(&r, chain::INPUT);
    let internet_drop = input_rules
        .iter()
        .position(|r| r.comment.as_deref() == Some(comment::INPUT_INTERNET_DROP))
        .expect("internet drop rule");
    for rule in &input_rules[..internet_drop] {
        assert!(
            !mentions(rule, "\"tcp\""),
            "TCP served before the internet port closes: {rule:?}"
        );
    }
    let mgmt: Vec<&Rule<'_>> = input_rules
        .iter()
        .filter(|r| mentions(r, &format!("@{}", set::MGMT_TCP)))
        .collect();
    assert_eq!(mgmt.len(), 2, "one management rule per family");
    for rule in mgmt {
        assert!(is_accept(rule));
        assert!(matches_iifname_set(rule, set::INSIDE_PORTS), "{rule:?}");
    }
    let json = to_json(&r).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let inside = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["add"]["set"]["name"] == set::INSIDE_PORTS)
        .unwrap()["add"]["set"]["elem"]
        .clone();
    assert_eq!(inside, serde_json::json!(["ded0", "lan0"]));
    // Even with a management prefix covering everything.
    let mut open = input.clone();
    open.management.prefixes = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    let r = render(&open);
    for rule in rules(&r, chain::INPUT) {
        if mentions(&rule, &format!("@{}", set::MGMT_TCP)) {
            assert!(matches_iifname_set(&rule, set::INSIDE_PORTS));
        }
    }
}

#[test]
fn no_management_ports_no_management_rules() {
    let mut input = ward_office_on("lab-veth.toml");
    input.management = Management {
        prefixes: vec!["10.10.0.0/28".parse().unwrap()],
        ..Management::default()
    };
    let r = render(&input);
    assert!(
        rules(&r, chain::INPUT)
            .iter()
            .all(|r| !mentions(r, &format!("@{}", set::MGMT_TCP)))
    );
    // Only IPv4 prefixes: only the IPv4 rule.
    input.management.api_port = Some(8443);
    let r = render(&input);
    let comments: Vec<String> = rules(&r, chain::INPUT)
        .iter()
        .filter_map(|r| r.comment.as_deref().map(str::to_string))
        .collect();
    assert!(comments.iter().any(|c| c == comment::INPUT_MGMT_V4));
    assert!(!comments.iter().any(|c| c == comment::INPUT_MGMT_V6));
}

#[test]
fn forward_refuses_dedicated_internet_before_anything_else() {
    let r = render(&ward_office_on("lab-veth.toml"));
    let fwd = rules(&r, chain::FORWARD);
    let first: Vec<&str> = fwd[..2]
        .iter()
        .map(|r| r.comment.as_deref().unwrap())
        .collect();
    assert_eq!(
        first,
        [
            comment::FORWARD_DEDICATED_TO_INTERNET,
            comment::FORWARD_INTERNET_TO_DEDICATED
        ]
    );
    // Nothing accepted from the internet port except by connection state.
    for rule in &fwd {
        if matches_iifname_set(rule, set::INTERNET_PORTS) {
            assert!(!is_accept(rule), "{rule:?}");
        }
    }
    assert_eq!(
        fwd.last().unwrap().comment.as_deref(),
        Some(comment::FORWARD_REST_DROP)
    );
}

#[test]
fn lan_services_and_masquerade_follow_the_input() {
    let mut input = ward_office_on("lab-veth.toml");
    let base = rules(&render(&input), chain::INPUT).len();
    input.lan_services = LanServices {
        dhcp: true,
        dns: true,
    };
    let r = render(&input);
    let with = rules(&r, chain::INPUT);
    assert_eq!(with.len(), base + 3, "DHCP, DNS v4, DNS v6");
    let services: Vec<&Rule<'_>> = with
        .iter()
        .filter(|r| {
            let c = r.comment.as_deref().unwrap_or("");
            c.starts_with("DHCPv4 server") || c.starts_with("DNS resolver")
        })
        .collect();
    assert_eq!(services.len(), 3);
    for rule in services {
        assert!(matches_iifname_set(rule, set::LAN_PORTS), "{rule:?}");
    }
    input.masquerade = false;
    input.masquerade_v6.clear();
    assert!(rules(&render(&input), chain::POSTROUTING).is_empty());
}

/// The boot ruleset: drop policies, loopback, neighbour discovery and metrics from the dedicated
/// ports only, nothing forwarded.
#[test]
fn boot_is_default_deny() {
    let bare = render_boot(&BootInput::default());
    assert_eq!(
        rules(&bare, chain::INPUT).len(),
        2,
        "no metrics rule without ports"
    );
    let r = render_boot(&boot_on("lab-veth.toml"));
    assert!(rules(&r, chain::FORWARD).is_empty());
    assert!(rules(&r, chain::OUTPUT).is_empty());
    let input = rules(&r, chain::INPUT);
    assert_eq!(input.len(), 3);
    assert!(mentions(&input[1], "nd-neighbor-solicit") && mentions(&input[1], "255"));
    let metrics = &input[2];
    assert!(mentions(metrics, "9100") && mentions(metrics, "accept"));
    for port in &load_profile(&repo().join("hw/lab-veth.toml"))
        .unwrap()
        .ports
    {
        let name = format!("\"{}\"", port.name);
        assert_eq!(
            mentions(metrics, &name),
            port.role == Role::Dedicated,
            "{name}"
        );
    }
    let json = to_json(&r).unwrap();
    assert_eq!(json.matches("\"policy\": \"drop\"").count(), 2);
}

/// Metrics: the run ruleset opens what the boot ruleset opens — the dedicated ports, any source
/// there — and never the lan, whatever the management prefixes say; without prefixes (no API, no
/// SSH) the SOC still scrapes.
#[test]
fn metrics_as_at_boot_dedicated_ports_only() {
    let input = ward_office_on("lab-veth.toml");
    let metrics_rules = |input: &NftInput| -> Vec<Rule<'static>> {
        rules(&render(input), chain::INPUT)
            .into_iter()
            .filter(|r| mentions(r, "9464"))
            .collect()
    };
    let metrics = metrics_rules(&input);
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert!(is_accept(&metrics[0]));
    assert!(matches_iifname_set(&metrics[0], set::DEDICATED_PORTS));
    assert!(!mentions(&metrics[0], set::MGMT_V4) && !mentions(&metrics[0], set::MGMT_V6));
    assert_eq!(metrics[0].comment.as_deref(), Some(comment::INPUT_METRICS));
    let boot = render_boot(&BootInput {
        dedicated_ifnames: input.ifnames(Role::Dedicated),
        metrics_tcp_ports: vec![9464],
    });
    let at_boot = rules(&boot, chain::INPUT)
        .into_iter()
        .find(|r| r.comment.as_deref() == Some(comment::INPUT_METRICS))
        .expect("boot metrics rule");
    assert!(mentions(&at_boot, "9464") && mentions(&at_boot, "\"ded0\""));

    let mut closed = input.clone();
    closed.management = Management {
        metrics_port: Some(9464),
        ..Management::default()
    };
    assert_eq!(metrics_rules(&closed).len(), 1);
    assert!(
        rules(&render(&closed), chain::INPUT)
            .iter()
            .all(|r| !mentions(r, &format!("@{}", set::MGMT_TCP)))
    );
}
