//! The rendered rulesets in a real kernel, with real traffic, inside network namespaces each test
//! creates and deletes (see `common`). Needs root, nft, ip, socat and ping; fails without them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test code

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use gateway_nft::nftables::schema::Nftables;
use gateway_nft::render::comment;
use gateway_nft::{BootInput, NftError, render, render_boot};
use serde_json::Value;

/// Asserts a probe is refused and that the rule with `comment` counted it.
fn refused(ns: &Ns, gw: &Ns, src: &str, dst: &str, port: u16, rule: &str) {
    let before = gw.counter(rule);
    let got = ns.tcp_probe(src, dst, port, Wait::Drop);
    assert!(
        got.is_err(),
        "{src} -> {dst}:{port} should be refused, got {got:?}"
    );
    let after = gw.counter(rule);
    assert!(
        after > before,
        "{src} -> {dst}:{port} was refused, but not by rule {rule:?} (counter {before} -> {after})"
    );
}

fn answered(ns: &Ns, src: &str, dst: &str, port: u16) -> String {
    ns.tcp_probe(src, dst, port, Wait::Answer)
        .unwrap_or_else(|e| panic!("should be answered: {e}"))
}

#[test]
fn forwarding_is_stateful_and_masqueraded() {
    let lab = Lab::new();
    let _inet4 = Server::start(&lab.inet, "0.0.0.0", OTHER_PORT, Reply::PeerAddr);
    let _inet6 = Server::start(&lab.inet, INET_SERVER6, OTHER_PORT, Reply::PeerAddr);
    let _client = Server::start(&lab.client, "0.0.0.0", OTHER_PORT, Reply::PeerAddr);
    let _ded = Server::start(&lab.ded, "0.0.0.0", OTHER_PORT, Reply::PeerAddr);
    // Without a ruleset the server sees the client itself: masquerade below is the ruleset's doing.
    assert_eq!(
        answered(&lab.client, CLIENT, INET_SERVER, OTHER_PORT),
        CLIENT
    );

    lab.gw.apply(&render(&lab_input()));

    // lan -> internet: works, and the Internet sees only the gateway's address.
    assert_eq!(
        answered(&lab.client, CLIENT, INET_SERVER, OTHER_PORT),
        GW_INET
    );
    assert_eq!(
        answered(&lab.client, CLIENT6, INET_SERVER6, OTHER_PORT),
        GW_INET6
    );
    // lan <-> dedicated: both ways, not translated.
    assert_eq!(
        answered(&lab.client, CLIENT, DED_SERVER, OTHER_PORT),
        CLIENT
    );
    assert_eq!(
        answered(&lab.ded, DED_SERVER, CLIENT, OTHER_PORT),
        DED_SERVER
    );

    // Internet -> lan, unsolicited: refused.
    refused(
        &lab.inet,
        &lab.gw,
        INET_SERVER,
        CLIENT,
        OTHER_PORT,
        comment::FORWARD_INTERNET_NEW_DROP,
    );
    // R1: dedicated and internet never meet, either way.
    refused(
        &lab.ded,
        &lab.gw,
        DED_SERVER,
        INET_SERVER,
        OTHER_PORT,
        comment::FORWARD_DEDICATED_TO_INTERNET,
    );
    refused(
        &lab.inet,
        &lab.gw,
        INET_SERVER,
        DED_SERVER,
        OTHER_PORT,
        comment::FORWARD_INTERNET_TO_DEDICATED,
    );
    // A lan source outside the lan prefixes is not forwarded (anti-spoofing).
    refused(
        &lab.client,
        &lab.gw,
        CLIENT_NOT_LAN,
        INET_SERVER,
        OTHER_PORT,
        comment::FORWARD_REST_DROP,
    );
}

#[test]
fn management_only_from_management_prefixes_never_from_internet() {
    let lab = Lab::new();
    let mut input = lab_input();
    // The internet server is even listed as a management source: the internet port still wins.
    input
        .management
        .prefixes
        .push(format!("{INET_SERVER}/32").parse().unwrap());
    lab.gw.apply(&render(&input));
    let _api = Server::start(&lab.gw, "0.0.0.0", API_PORT, Reply::PeerAddr);
    let _api6 = Server::start(&lab.gw, GW_LAN6, API_PORT, Reply::PeerAddr);
    let _metrics = Server::start(&lab.gw, "0.0.0.0", METRICS_PORT, Reply::PeerAddr);
    let _other = Server::start(&lab.gw, "0.0.0.0", OTHER_PORT, Reply::PeerAddr);

    // From a management prefix on the lan: the API answers, IPv4 and IPv6.
    assert_eq!(answered(&lab.client, CLIENT, GW_LAN, API_PORT), CLIENT);
    assert_eq!(answered(&lab.client, CLIENT6, GW_LAN6, API_PORT), CLIENT6);
    assert!(
        lab.client.ping(GW_LAN, Wait::Answer),
        "lan ping to the gateway"
    );
    // Metrics only from the dedicated ports (as the boot ruleset): not from the lan, even from a
    // management prefix; from the dedicated network, any source there.
    let rest = comment::INPUT_REST_DROP;
    refused(&lab.client, &lab.gw, CLIENT, GW_LAN, METRICS_PORT, rest);
    assert_eq!(
        answered(&lab.ded, DED_SERVER, GW_DED, METRICS_PORT),
        DED_SERVER
    );

    // From the lan but outside the management prefixes: refused.
    refused(
        &lab.client,
        &lab.gw,
        CLIENT_OUTSIDE_MGMT,
        GW_LAN,
        API_PORT,
        rest,
    );
    refused(
        &lab.client,
        &lab.gw,
        CLIENT6_OUTSIDE_MGMT,
        GW_LAN6,
        API_PORT,
        rest,
    );
    // A port that is not a management port: refused even from the management prefix.
    refused(&lab.client, &lab.gw, CLIENT, GW_LAN, OTHER_PORT, rest);
    // The dedicated network is not a management prefix here.
    refused(&lab.ded, &lab.gw, DED_SERVER, GW_DED, API_PORT, rest);

    // From the internet port: never, to any of the gateway's addresses, not even ping.
    let internet = comment::INPUT_INTERNET_DROP;
    refused(&lab.inet, &lab.gw, INET_SERVER, GW_INET, API_PORT, internet);
    refused(
        &lab.inet,
        &lab.gw,
        INET_SERVER,
        GW_INET,
        METRICS_PORT,
        internet,
    );
    refused(&lab.inet, &lab.gw, INET_SERVER, GW_LAN, API_PORT, internet);
    refused(
        &lab.inet,
        &lab.gw,
        INET_SERVER6,
        GW_LAN6,
        API_PORT,
        internet,
    );
    let before = lab.gw.counter(internet);
    assert!(
        !lab.inet.ping(GW_INET, Wait::Drop),
        "internet ping answered"
    );
    assert!(lab.gw.counter(internet) > before);
}

/// `nft -j list` output made comparable: handles and counter values removed.
fn normalised(ruleset: &Nftables<'_>) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("handle");
                if let Some(Value::Object(c)) = m.get_mut("counter") {
                    c.insert("packets".into(), 0.into());
                    c.insert("bytes".into(), 0.into());
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(ruleset).unwrap();
    strip(&mut v);
    v
}

/// `ruleset` plus a jump loop, which the kernel refuses only at commit time.
fn with_jump_loop(ruleset: &Nftables<'static>) -> Nftables<'static> {
    let mut v = serde_json::to_value(ruleset).unwrap();
    let objects = v["nftables"].as_array_mut().unwrap();
    for o in serde_json::json!([
        {"add": {"chain": {"family": "inet", "table": "gateway", "name": "loop_a"}}},
        {"add": {"chain": {"family": "inet", "table": "gateway", "name": "loop_b"}}},
        {"add": {"rule": {"family": "inet", "table": "gateway", "chain": "input", "expr": [{"jump": {"target": "loop_a"}}]}}},
        {"add": {"rule": {"family": "inet", "table": "gateway", "chain": "loop_a", "expr": [{"jump": {"target": "loop_b"}}]}}},
        {"add": {"rule": {"family": "inet", "table": "gateway", "chain": "loop_b", "expr": [{"jump": {"target": "loop_a"}}]}}},
    ])
    .as_array()
    .unwrap()
    {
        objects.push(o.clone());
    }
    serde_json::from_value(v).unwrap()
}

/// `ruleset` plus a rule naming a set that does not exist, which nft itself refuses.
fn with_unknown_set(ruleset: &Nftables<'static>) -> Nftables<'static> {
    let mut v = serde_json::to_value(ruleset).unwrap();
    v["nftables"].as_array_mut().unwrap().push(serde_json::json!(
        {"add": {"rule": {"family": "inet", "table": "gateway", "chain": "input", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@no_such_set"}},
            {"accept": null}
        ]}}}
    ));
    serde_json::from_value(v).unwrap()
}

fn bystander(gw: &Ns) -> String {
    gw.exec_ok("nft", &["list", "table", "inet", "bystander"])
}

#[test]
fn replacement_is_atomic_and_a_refused_ruleset_changes_nothing() {
    let lab = Lab::new();
    // Another table on the box: never touched by ours.
    lab.gw.exec_ok(
        "nft",
        &[
            "add table inet bystander; add chain inet bystander c { type filter hook input priority 10; policy accept; }; add rule inet bystander c counter comment \"not ours\"",
        ],
    );
    let bystander_before = bystander(&lab.gw);
    let _echo = Server::start(&lab.inet, INET_SERVER, OTHER_PORT, Reply::Echo);
    let _peer = Server::start(&lab.inet, INET_SERVER, OTHER_PORT + 1, Reply::PeerAddr);

    let a = render(&lab_input());
    let mut input_b = lab_input();
    input_b.management.prefixes = vec!["10.99.1.8/29".parse().unwrap()];
    input_b.management.ssh_port = Some(22);
    let b = render(&input_b);

    lab.gw.apply(&a);
    let listed_a = normalised(&lab.gw.current());
    // A connection through the gateway, established under ruleset A.
    let conn = lab
        .client
        .run_in(|| TcpStream::connect((INET_SERVER, OTHER_PORT)))
        .unwrap();
    let mut lines = BufReader::new(conn.try_clone().unwrap()).lines();
    let mut conn_w = conn;
    writeln!(conn_w, "before").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "before");

    lab.gw.apply(&b);
    let listed_b = normalised(&lab.gw.current());
    assert_ne!(listed_a, listed_b);

    // Twenty replacements while another thread keeps listing the table: every listing is wholly A
    // or wholly B, never a missing or half-built table.
    let stop = AtomicBool::new(false);
    let listings = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            lab.gw.run_in(|| {
                let mut n = 0u32;
                loop {
                    let done = stop.load(Ordering::Relaxed);
                    let now = gateway_nft::current()
                        .expect("listing")
                        .expect("table inet gateway missing during a replacement");
                    let now = normalised(&now);
                    assert!(
                        now == listed_a || now == listed_b,
                        "a listing during replacement was neither ruleset: {now:#}"
                    );
                    n += 1;
                    if done {
                        return n;
                    }
                }
            })
        });
        for i in 0..20 {
            lab.gw.apply(if i % 2 == 0 { &a } else { &b });
        }
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap()
    });
    println!("{listings} listings during 20 replacements, all whole");
    assert_eq!(normalised(&lab.gw.current()), listed_b);

    // The connection established under A survived every replacement (conntrack state is kept and
    // each new ruleset admits established traffic).
    writeln!(conn_w, "after").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "after");

    // Refused rulesets, one by the kernel at commit time, one by nft: nothing changes, and the
    // error carries nft's own message. Both batches begin by deleting the table.
    for (what, bad, expect) in [
        ("jump loop", with_jump_loop(&a), "Could not process rule"),
        ("unknown set", with_unknown_set(&a), "Error"),
    ] {
        let err = lab.gw.run_in(|| gateway_nft::apply(&bad)).unwrap_err();
        let NftError::Refused { stderr, .. } = &err else {
            panic!("{what}: expected Refused, got {err:?}");
        };
        assert!(stderr.contains(expect), "{what}: {err}");
        println!("{what}: {err}");
        assert_eq!(
            normalised(&lab.gw.current()),
            listed_b,
            "{what}: the ruleset in force changed"
        );
        // The same batch through the nftables crate's own helper: refused as a whole as well.
        let raw = lab
            .gw
            .run_in(|| gateway_nft::nftables::helper::apply_ruleset(&bad));
        assert!(raw.is_err(), "{what}: helper applied it");
        assert_eq!(normalised(&lab.gw.current()), listed_b);
    }
    // Still enforcing B: new connections out work, masqueraded.
    assert_eq!(
        answered(&lab.client, CLIENT, INET_SERVER, OTHER_PORT + 1),
        GW_INET
    );
    writeln!(conn_w, "still").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "still");
    assert_eq!(
        bystander(&lab.gw),
        bystander_before,
        "table inet bystander changed"
    );
}

#[test]
fn boot_ruleset_denies_all_but_neighbour_discovery_then_gives_way() {
    let lab = Lab::new();
    let _inet = Server::start(&lab.inet, "0.0.0.0", OTHER_PORT, Reply::PeerAddr);
    let _api = Server::start(&lab.gw, "0.0.0.0", API_PORT, Reply::PeerAddr);
    let _api6 = Server::start(&lab.gw, GW_LAN6, API_PORT, Reply::PeerAddr);
    lab.gw.apply(&render_boot(&lab_boot_input()));

    // Nothing forwarded, nothing served (the boot ruleset has no counters: the policy drops).
    for (src, dst, port) in [
        (CLIENT, INET_SERVER, OTHER_PORT),
        (CLIENT, GW_LAN, API_PORT),
        (CLIENT6, GW_LAN6, API_PORT),
    ] {
        let got = lab.client.tcp_probe(src, dst, port, Wait::Drop);
        assert!(
            got.is_err(),
            "boot ruleset let {src} -> {dst}:{port} through"
        );
    }
    assert!(
        !lab.client.ping(GW_LAN, Wait::Drop),
        "boot ruleset answered ping"
    );
    // Neighbour discovery worked: the client resolved the gateway's IPv6 address.
    let neigh = lab
        .client
        .exec_ok("ip", &["-6", "neigh", "show", GW_LAN6, "dev", "eth0"]);
    assert!(
        ["REACHABLE", "STALE", "DELAY", "PROBE"]
            .iter()
            .any(|s| neigh.contains(s)),
        "neighbour discovery failed under the boot ruleset: {neigh:?}"
    );

    // The operational ruleset replaces it in one step.
    lab.gw.apply(&render(&lab_input()));
    assert_eq!(
        answered(&lab.client, CLIENT, INET_SERVER, OTHER_PORT),
        GW_INET
    );
    assert_eq!(answered(&lab.client, CLIENT, GW_LAN, API_PORT), CLIENT);
}

/// The text file the image loads at boot and `render_boot()` make the same table (rules compared
/// without comments), so the image can switch to the rendered JSON without a change. The file's
/// includes (ports generated from the profile, the services file) are redirected to a copy here.
#[test]
fn boot_ruleset_matches_the_image_file() {
    require_root_and_tools();
    let nft_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/rootfs/etc/nftables");
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("gwt-nft{id}-bootfile"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("gateway-ports.nft"),
        "define LAN_PORTS = { \"lan0\" }\ndefine DEDICATED_PORTS = { \"ded0\" }\n\
         define INTERNET_PORTS = { \"inet0\" }\n",
    )
    .unwrap();
    let services = std::fs::read_to_string(nft_dir.join("gateway-services.nft")).unwrap();
    std::fs::write(dir.join("gateway-services.nft"), &services).unwrap();
    let boot = std::fs::read_to_string(nft_dir.join("gateway-boot.nft"))
        .unwrap()
        .replace("/etc/nftables/", &format!("{}/", dir.display()));
    let image = dir.join("gateway-boot.nft");
    std::fs::write(&image, boot).unwrap();
    let metrics: Vec<u16> = services
        .lines()
        .find_map(|l| l.strip_prefix("define METRICS_TCP_PORTS = {"))
        .and_then(|l| l.strip_suffix('}'))
        .expect("gateway-services.nft defines METRICS_TCP_PORTS")
        .split(',')
        .map(|p| p.trim().parse().unwrap())
        .collect();
    let ours = Ns::create(format!("gwt-nft{id}-bootr"));
    let theirs = Ns::create(format!("gwt-nft{id}-booti"));
    ours.apply(&render_boot(&BootInput {
        dedicated_ifnames: vec!["ded0".into()],
        metrics_tcp_ports: metrics,
    }));
    // The file starts with `flush ruleset`: harmless inside this fresh namespace.
    theirs.exec_ok("nft", &["-f", image.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let strip_comments = |mut v: Value| {
        fn walk(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    m.remove("comment");
                    m.values_mut().for_each(walk);
                }
                Value::Array(a) => a.iter_mut().for_each(walk),
                _ => {}
            }
        }
        walk(&mut v);
        v
    };
    assert_eq!(
        strip_comments(normalised(&ours.current())),
        strip_comments(normalised(&theirs.current())),
        "render_boot() differs from {}",
        nft_dir.join("gateway-boot.nft").display()
    );
}

/// Rulesets for the lab, for edge inputs (nothing but ports; every service, management open to all
/// addresses) and the boot ruleset pass `nft --check` and load (in a fresh namespace).
#[test]
fn rendered_rulesets_check_and_load() {
    require_root_and_tools();
    let ns = Ns::create(format!("gwt-nft{}-check", std::process::id()));
    let mut bare = lab_input();
    bare.lan_prefixes.clear();
    bare.dedicated_prefixes.clear();
    bare.management = Default::default();
    bare.masquerade = false;
    bare.masquerade_v6.clear();
    let mut everything = lab_input();
    everything.management.prefixes = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    everything.management.ssh_port = Some(22);
    everything.lan_services = gateway_nft::LanServices {
        dhcp: true,
        dns: true,
    };
    for (what, r) in [
        ("lab", render(&lab_input())),
        ("bare", render(&bare)),
        ("everything", render(&everything)),
        ("boot", render_boot(&lab_boot_input())),
    ] {
        ns.run_in(|| gateway_nft::check(&r))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        ns.apply(&r);
        let rules = ns
            .current()
            .objects
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    gateway_nft::nftables::schema::NfObject::ListObject(
                        gateway_nft::nftables::schema::NfListObject::Rule(_)
                    )
                )
            })
            .count();
        println!("{what}: {rules} rules loaded");
    }
}
