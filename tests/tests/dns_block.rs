//! Domain blocking in the real XDP program (issue 6, verdict step 2.2): DNS queries from the lan for
//! listed names drop as `domain`; exceptions, unlisted names, responses and non-DNS pass; questions
//! that cannot be walked are `malformed` (or pass with `[domains] malformed = "pass"`). The
//! reference model's side of this comes with the corpus (step 3). Needs root: fails without it.
#![allow(clippy::unwrap_used)] // reason: test code

use std::net::IpAddr;
use std::sync::Arc;

use gateway_common::dname::{self, BLOCK_APEX, BLOCK_BELOW, PASS_APEX, PASS_BELOW};
use gateway_common::values::{DomainValue, SETTING_DNS_INSPECT, SETTING_DNS_MALFORMED_PASS};
use gateway_common::{Reason, Role};
use gateway_policy::image::{FeedInfo, MapImage};
use gateway_tests::{
    corpus::{CorpusAddrs, Ipv4, Ipv6, L4, Udp, corpus_image, corpus_routes},
    testnet::{TestNet, XdpHarness},
};

fn addrs(net: &TestNet) -> CorpusAddrs {
    CorpusAddrs {
        lan_if: net.ifindex_of(Role::Lan),
        dedicated_if: net.ifindex_of(Role::Dedicated),
        internet_if: net.ifindex_of(Role::Internet),
        unknown_if: net.spare,
        ..CorpusAddrs::example()
    }
}

/// `\x03www\x07example\x03com\x00` for `www.example.com`.
fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// A DNS message: header (id, flags, QDCOUNT 1) and the given question bytes.
fn message(flags: u16, question: &[u8]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34];
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(question);
    m
}

/// A standard query (RD set) for `name`, type A, class IN.
fn query(name_wire: &[u8]) -> Vec<u8> {
    let mut q = name_wire.to_vec();
    q.extend_from_slice(&[0, 1, 0, 1]);
    message(0x0100, &q)
}

fn udp53(payload: Vec<u8>) -> L4 {
    L4::Udp(Udp {
        payload,
        ..Udp::new(40000, 53)
    })
}

fn frame(src: IpAddr, dst: IpAddr, l4: L4) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4::new(s, d, l4).frame().bytes(),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6::new(s, d, l4).frame().bytes(),
        _ => unreachable!("one family"),
    }
}

fn image(addrs: &CorpusAddrs) -> MapImage {
    let mut img = corpus_image(addrs);
    img.domain_feeds = vec![
        FeedInfo {
            name: "threats".into(),
            entries: 3,
        },
        FeedInfo {
            name: "exact".into(),
            entries: 1,
        },
    ];
    let h = |n: &str| dname::hash_dotted(img.domain_seed, n.as_bytes());
    img.domains = [
        (
            h("blocked.example"),
            DomainValue::new(BLOCK_APEX | BLOCK_BELOW, 0),
        ),
        (
            h("ok.blocked.example"),
            DomainValue::new(PASS_APEX | PASS_BELOW, 0),
        ),
        (h("bad.ok.blocked.example"), DomainValue::new(BLOCK_APEX, 0)),
        (h("exact.example"), DomainValue::new(BLOCK_APEX, 1)),
    ]
    .into_iter()
    .collect();
    img.settings_flags |= SETTING_DNS_INSPECT;
    img
}

#[test]
fn dns_queries_for_listed_names_drop_as_domain() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&addrs(net)))?;
    let a = addrs(&h.net);
    let img = image(&a);
    h.dp.apply(Arc::new(img.clone()), 1)?;

    let deep = format!("{}blocked.example", "a.".repeat(110));
    assert!(wire(&deep).len() <= 255, "{}", wire(&deep).len());
    let mut long_label = vec![64u8];
    long_label.extend_from_slice(&[b'x'; 64]);
    long_label.push(0);
    let blocked_q = query(&wire("blocked.example"));
    let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        (
            "unlisted name",
            query(&wire("www.example.org")),
            Reason::Pass,
        ),
        ("listed name", blocked_q.clone(), Reason::Domain),
        (
            "upper case sub-name",
            query(&wire("A.B.BLOCKED.Example")),
            Reason::Domain,
        ),
        (
            "deep sub-name (112 labels)",
            query(&wire(&deep)),
            Reason::Domain,
        ),
        (
            "parent of a listed name",
            query(&wire("example")),
            Reason::Pass,
        ),
        (
            "exception",
            query(&wire("ok.blocked.example")),
            Reason::Pass,
        ),
        (
            "under an exception",
            query(&wire("x.ok.blocked.example")),
            Reason::Pass,
        ),
        (
            "block under an exception",
            query(&wire("bad.ok.blocked.example")),
            Reason::Domain,
        ),
        (
            "exact-only name",
            query(&wire("exact.example")),
            Reason::Domain,
        ),
        (
            "under an exact-only name",
            query(&wire("www.exact.example")),
            Reason::Pass,
        ),
        (
            "compressed question",
            query(&[0xc0, 0x0c]),
            Reason::Malformed,
        ),
        ("64-byte label", query(&long_label), Reason::Malformed),
        (
            "no root byte",
            message(0x0100, &wire("blocked.example")[..8]),
            Reason::Malformed,
        ),
        (
            "no QTYPE/QCLASS",
            message(0x0100, &wire("blocked.example")),
            Reason::Malformed,
        ),
        ("short header", blocked_q[..10].to_vec(), Reason::Malformed),
        ("response", message(0x8180, &blocked_q[12..]), Reason::Pass),
        (
            "notify (opcode 4)",
            message(0x2000, &blocked_q[12..]),
            Reason::Pass,
        ),
    ];
    let mut wrong = Vec::new();
    for (src, dst) in [(a.v4.client, a.v4.internet), (a.v6.client, a.v6.internet)] {
        for (name, msg, want) in &cases {
            let got = h
                .run(a.lan_if, &frame(src, dst, udp53(msg.clone())))?
                .reason;
            if got != *want {
                wrong.push(format!(
                    "{name} from {src}: {} (want {})",
                    got.as_str(),
                    want.as_str()
                ));
            }
        }
        // Not DNS: the same bytes to another port; and a DNS query arriving on the internet port.
        let other = L4::Udp(Udp {
            payload: blocked_q.clone(),
            ..Udp::new(40000, 5353)
        });
        let got = h.run(a.lan_if, &frame(src, dst, other))?.reason;
        if got != Reason::Pass {
            wrong.push(format!("udp/5353 from {src}: {}", got.as_str()));
        }
    }

    // `[domains] malformed = "pass"`.
    let mut lenient = img.clone();
    lenient.settings_flags |= SETTING_DNS_MALFORMED_PASS;
    h.dp.apply(Arc::new(lenient), 2)?;
    let compressed = frame(a.v4.client, a.v4.internet, udp53(query(&[0xc0, 0x0c])));
    let got = h.run(a.lan_if, &compressed)?.reason;
    if got != Reason::Pass {
        wrong.push(format!(
            "compressed with malformed = pass: {}",
            got.as_str()
        ));
    }
    // Without domain feeds nothing is inspected.
    h.dp.apply(Arc::new(corpus_image(&a)), 3)?;
    let blocked = frame(a.v4.client, a.v4.internet, udp53(blocked_q.clone()));
    for (what, f) in [("listed", &blocked), ("compressed", &compressed)] {
        let got = h.run(a.lan_if, f)?.reason;
        if got != Reason::Pass {
            wrong.push(format!("{what} without inspection: {}", got.as_str()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}
