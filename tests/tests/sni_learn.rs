//! Beyond the first packet (issue 6 item 3) in the real XDP program: TLS ClientHello SNI on the
//! policy's SNI ports (lan step 2.2b), DNS responses for blocked names dropped and their answers
//! learnt (every role, last step), and lan packets to a learnt address dropped while the entry
//! lives and the active policy still blocks the name (lan step 2.2c). Needs root: fails without it.
#![allow(clippy::unwrap_used)] // reason: test code

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use gateway_common::Reason;
use gateway_common::dname;
use gateway_common::learn::{
    STAT_LEARN_EXPIRED, STAT_LEARN_HITS, STAT_LEARN_INSERTS, STAT_LEARN_RESPONSES,
    STAT_LEARN_STALE, STAT_SNI_BLOCKED, STAT_SNI_CHECKED, STAT_SNI_MALFORMED, STAT_SNI_SPLIT,
};
use gateway_common::values::SETTING_DNS_MALFORMED_PASS;
use gateway_dataplane::monotonic_ns;
use gateway_policy::image::MapImage;
use gateway_tests::{
    corpus::{CorpusAddrs, Ipv4, Ipv6, L4, Tcp, Udp, corpus_image, corpus_routes, dns_image},
    domain_packets::{Answer, ClientHello, DnsResponse, TO_QUESTION, extensions_len_offset},
    testnet::XdpHarness,
};

fn frame(src: IpAddr, dst: IpAddr, l4: L4) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4::new(s, d, l4).frame().bytes(),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6::new(s, d, l4).frame().bytes(),
        _ => unreachable!("one family"),
    }
}

/// A data segment (PSH|ACK) to `dport` carrying `payload`.
fn segment(dport: u16, payload: Vec<u8>) -> L4 {
    L4::Tcp(Tcp {
        flags: 0x18,
        payload,
        ..Tcp::new(40000, dport)
    })
}

/// A UDP datagram from port 53 (a resolver's answer).
fn from53(payload: Vec<u8>) -> L4 {
    L4::Udp(Udp {
        payload,
        ..Udp::new(53, 40000)
    })
}

/// The names of dns_block.rs, SNI on 443 and 8443, learning capped at 300 s.
fn image(addrs: &CorpusAddrs) -> MapImage {
    let mut img = dns_image(addrs);
    img.sni_ports = [443, 8443, 0, 0];
    img.learn_ttl_max_secs = 300;
    img
}

fn check(wrong: &mut Vec<String>, what: &str, got: Reason, want: Reason) {
    if got != want {
        wrong.push(format!("{what}: {} (want {})", got.as_str(), want.as_str()));
    }
}

#[test]
fn client_hello_sni_on_sni_ports() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
    let img = image(&a);
    h.dp.apply(Arc::new(img.clone()), 1)?;
    let before = h.dp.learnt_table()?.stats()?;

    let hello = |n: &str| ClientHello::new(n).bytes();
    // The extensions length overruns the ClientHello.
    let mut ext_overrun = hello("blocked.example");
    let at = extensions_len_offset(32);
    ext_overrun[at + 1] = ext_overrun[at + 1].wrapping_add(1);
    // An extension whose length overruns the extensions block.
    let mut bad_ext = ClientHello::new("blocked.example").bytes();
    bad_ext[at + 2 + 2] = 0x7f; // the GREASE extension's length high byte
    // A session id longer than 32.
    let mut long_sid = hello("blocked.example");
    long_sid[5 + 4 + 2 + 32] = 33;
    // server_name behind 1,600 bytes of padding: not in a 1,400-byte first segment.
    let big = ClientHello {
        pad_before: 1600,
        ..ClientHello::new("blocked.example")
    }
    .bytes();
    let split = big[..1400].to_vec();
    // The whole padded ClientHello is one 1,700-byte segment (the program reads up to 2,048).
    let cases: Vec<(&str, u16, Vec<u8>, Reason)> = vec![
        ("listed name", 443, hello("blocked.example"), Reason::Domain),
        (
            "sub-name",
            443,
            hello("www.blocked.example"),
            Reason::Domain,
        ),
        (
            "upper case",
            443,
            hello("WWW.Blocked.EXAMPLE"),
            Reason::Domain,
        ),
        (
            "trailing dot",
            443,
            hello("blocked.example."),
            Reason::Domain,
        ),
        (
            "exact-only name",
            443,
            hello("exact.example"),
            Reason::Domain,
        ),
        (
            "under exact-only",
            443,
            hello("a.exact.example"),
            Reason::Pass,
        ),
        ("exception", 443, hello("ok.blocked.example"), Reason::Pass),
        ("unlisted", 443, hello("www.example.org"), Reason::Pass),
        (
            "no server_name",
            443,
            ClientHello::without_sni().bytes(),
            Reason::Pass,
        ),
        (
            "empty session id",
            443,
            ClientHello {
                session_id_len: 0,
                ..ClientHello::new("blocked.example")
            }
            .bytes(),
            Reason::Domain,
        ),
        (
            "second SNI port",
            8443,
            hello("blocked.example"),
            Reason::Domain,
        ),
        (
            "not an SNI port",
            8080,
            hello("blocked.example"),
            Reason::Pass,
        ),
        (
            "application data",
            443,
            vec![23, 3, 3, 0, 4, 1, 2, 3, 4],
            Reason::Pass,
        ),
        (
            "not TLS",
            443,
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            Reason::Pass,
        ),
        (
            "server_name beyond the segment",
            443,
            split,
            Reason::Malformed,
        ),
        ("whole padded ClientHello", 443, big, Reason::Domain),
        (
            "handshake header cut",
            443,
            vec![22, 3, 1, 0, 200],
            Reason::Malformed,
        ),
        ("extensions overrun", 443, ext_overrun, Reason::Malformed),
        ("extension overrun", 443, bad_ext, Reason::Malformed),
        ("session id > 32", 443, long_sid, Reason::Malformed),
        (
            "empty label",
            443,
            hello("a..blocked.example"),
            Reason::Malformed,
        ),
        (
            "64-byte label",
            443,
            hello(&format!("{}.blocked.example", "x".repeat(64))),
            Reason::Malformed,
        ),
        (
            "254-byte name",
            443,
            hello(&format!("{}examples", "a.".repeat(123))),
            Reason::Malformed,
        ),
    ];
    let mut wrong = Vec::new();
    for (src, dst) in [(a.v4.client, a.v4.internet), (a.v6.client, a.v6.internet)] {
        for (name, port, payload, want) in &cases {
            let got = h
                .run(a.lan_if, &frame(src, dst, segment(*port, payload.clone())))?
                .reason;
            check(&mut wrong, &format!("{name} from {src}"), got, *want);
        }
        // A SYN carries no payload: nothing to judge.
        let syn = frame(src, dst, L4::tcp(40000, 443));
        check(
            &mut wrong,
            "SYN",
            h.run(a.lan_if, &syn)?.reason,
            Reason::Pass,
        );
    }
    let after = h.dp.learnt_table()?.stats()?;
    let d = |i: u32| after.get(i) - before.get(i);
    // Per family: 8 blocked; 2 split (beyond the segment, header cut); 6 malformed; 19
    // ClientHellos looked into (all but the cut header, which is not known to be one).
    let counted = [
        ("sni_blocked", d(STAT_SNI_BLOCKED), 2 * 8),
        ("sni_split", d(STAT_SNI_SPLIT), 2 * 2),
        ("sni_malformed", d(STAT_SNI_MALFORMED), 2 * 6),
    ];
    for (what, got, want) in counted {
        if got != want {
            wrong.push(format!("{what}: {got} (want {want})"));
        }
    }
    if d(STAT_SNI_CHECKED) != 2 * 19 {
        wrong.push(format!("sni_checked: {}", d(STAT_SNI_CHECKED)));
    }

    // `[domains] malformed = "pass"` lets unreadable ClientHellos through.
    let mut lenient = img.clone();
    lenient.settings_flags |= SETTING_DNS_MALFORMED_PASS;
    h.dp.apply(Arc::new(lenient), 2)?;
    let (s, d4) = (a.v4.client, a.v4.internet);
    let bad = frame(s, d4, segment(443, hello("a..blocked.example")));
    check(
        &mut wrong,
        "malformed = pass",
        h.run(a.lan_if, &bad)?.reason,
        Reason::Pass,
    );
    // No SNI ports: not inspected.
    let mut off = img.clone();
    off.sni_ports = [0; 4];
    h.dp.apply(Arc::new(off), 3)?;
    let blocked = frame(s, d4, segment(443, hello("blocked.example")));
    check(
        &mut wrong,
        "sni_ports = []",
        h.run(a.lan_if, &blocked)?.reason,
        Reason::Pass,
    );
    // Without domain feeds nothing is inspected, whatever the ports say.
    let mut plain = corpus_image(&a);
    plain.sni_ports = [443, 0, 0, 0];
    h.dp.apply(Arc::new(plain), 4)?;
    check(
        &mut wrong,
        "no domain feeds",
        h.run(a.lan_if, &blocked)?.reason,
        Reason::Pass,
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

const CDN4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
const CDN4B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 78);
const CDN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x77);

/// A response for `qname` through a CNAME chain: qname → edge.cdn.example.net (A CDN4, A CDN4B,
/// AAAA CDN6), the later owners compressed as pointers to the CNAME's target.
fn chain_response(qname: &str, ttl: u32) -> DnsResponse {
    let mut r = DnsResponse::new(qname, Vec::new());
    let target_at = (r.answers_offset() + 2 + 10) as u16; // after the CNAME's owner and fixed part
    let ptr = (0xc000 | target_at).to_be_bytes().to_vec();
    r.answers = vec![
        Answer::cname(TO_QUESTION.to_vec(), "edge.cdn.example.net", ttl),
        Answer::a(ptr.clone(), CDN4, ttl),
        Answer::a(ptr.clone(), CDN4B, ttl),
        Answer::aaaa(ptr, CDN6, ttl),
    ];
    r
}

#[test]
fn answers_for_blocked_names_are_learnt() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
    let img = image(&a);
    h.dp.apply(Arc::new(img.clone()), 1)?;
    let mut table = h.dp.learnt_table()?;
    let before = table.stats()?;
    let mut wrong = Vec::new();
    let (resolver4, client4) = (a.v4.internet, a.v4.client);
    let (resolver6, client6) = (a.v6.internet, a.v6.client);
    let to = |dst: IpAddr, src: IpAddr| frame(src, dst, L4::tcp(40000, 443));
    let cdn4 = IpAddr::V4(CDN4);
    let cdn6 = IpAddr::V6(CDN6);

    // Before any answer, the CDN is reachable.
    check(
        &mut wrong,
        "cdn before",
        h.run(a.lan_if, &to(cdn4, client4))?.reason,
        Reason::Pass,
    );

    // An answer for an allowed name: passes, teaches nothing.
    let allowed = chain_response("www.example.org", 600).bytes();
    let got = h.run(a.internet_if, &frame(resolver4, client4, from53(allowed)))?;
    check(&mut wrong, "allowed answer", got.reason, Reason::Pass);
    check(
        &mut wrong,
        "cdn after allowed answer",
        h.run(a.lan_if, &to(cdn4, client4))?.reason,
        Reason::Pass,
    );

    // An answer for a blocked name arriving on the internet port (over IPv6 this time): dropped,
    // its three addresses learnt, TTL capped at 300 s.
    let t0 = monotonic_ns();
    let blocked = chain_response("www.blocked.example", 86_400).bytes();
    let got = h.run(
        a.internet_if,
        &frame(resolver6, client6, from53(blocked.clone())),
    )?;
    check(&mut wrong, "blocked answer", got.reason, Reason::Domain);
    let entries = table.entries()?;
    let mut learnt: Vec<IpAddr> = entries.iter().map(|e| e.addr).collect();
    learnt.sort();
    let mut want = vec![IpAddr::V4(CDN4), IpAddr::V4(CDN4B), cdn6];
    want.sort();
    if learnt != want {
        wrong.push(format!("learnt {learnt:?}, want {want:?}"));
    }
    for e in &entries {
        let left = e.value.expires_ns.saturating_sub(t0);
        if !(299_000_000_000..=301_000_000_000).contains(&left) {
            wrong.push(format!("{}: expires in {left} ns, want ~300 s", e.addr));
        }
        if e.value.hash != dname::hash_dotted(img.domain_seed, b"blocked.example")
            || e.value.whole != 0
        {
            wrong.push(format!(
                "{}: node {:x} whole {}",
                e.addr, e.value.hash, e.value.whole
            ));
        }
    }
    // Lan packets to them drop as domain, from either family; others pass.
    check(
        &mut wrong,
        "to learnt v4",
        h.run(a.lan_if, &to(cdn4, client4))?.reason,
        Reason::Domain,
    );
    check(
        &mut wrong,
        "to learnt v6",
        h.run(a.lan_if, &to(cdn6, client6))?.reason,
        Reason::Domain,
    );
    let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 79));
    check(
        &mut wrong,
        "to an unlearnt address",
        h.run(a.lan_if, &to(other, client4))?.reason,
        Reason::Pass,
    );
    // Traffic from the learnt address towards the lan is not judged by the lan steps.
    let back = frame(cdn4, client4, L4::tcp(443, 40000));
    check(
        &mut wrong,
        "from learnt (internet port)",
        h.run(a.internet_if, &back)?.reason,
        Reason::Pass,
    );
    // The same answer from a resolver on the lan or the dedicated side is dropped too.
    let got = h.run(
        a.lan_if,
        &frame(a.v4.lan_host, client4, from53(blocked.clone())),
    )?;
    check(
        &mut wrong,
        "blocked answer on lan",
        got.reason,
        Reason::Domain,
    );
    let got = h.run(
        a.dedicated_if,
        &frame(a.v4.dedicated_host, client4, from53(blocked.clone())),
    )?;
    check(
        &mut wrong,
        "blocked answer on dedicated",
        got.reason,
        Reason::Domain,
    );
    // An exception's answer passes.
    let ok = chain_response("ok.blocked.example", 60).bytes();
    let got = h.run(a.internet_if, &frame(resolver4, client4, from53(ok)))?;
    check(&mut wrong, "exception's answer", got.reason, Reason::Pass);
    // NXDOMAIN for a blocked name: dropped, nothing to learn. A truncated answer section: what was
    // whole is learnt, the response still dropped.
    let mut nx = DnsResponse::new("x.blocked.example", Vec::new());
    nx.rcode = 3;
    let got = h.run(
        a.internet_if,
        &frame(resolver4, client4, from53(nx.bytes())),
    )?;
    check(
        &mut wrong,
        "NXDOMAIN for blocked",
        got.reason,
        Reason::Domain,
    );
    let cut_resp = DnsResponse::new(
        "t.blocked.example",
        vec![
            Answer::a(TO_QUESTION.to_vec(), Ipv4Addr::new(198, 51, 100, 80), 30),
            Answer::a(TO_QUESTION.to_vec(), Ipv4Addr::new(198, 51, 100, 81), 30),
        ],
    )
    .bytes();
    let cut = cut_resp[..cut_resp.len() - 2].to_vec();
    let got = h.run(a.internet_if, &frame(resolver4, client4, from53(cut)))?;
    check(&mut wrong, "cut answer", got.reason, Reason::Domain);
    let t80 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 80));
    let t81 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 81));
    check(
        &mut wrong,
        "whole record of a cut answer",
        h.run(a.lan_if, &to(t80, client4))?.reason,
        Reason::Domain,
    );
    check(
        &mut wrong,
        "cut record",
        h.run(a.lan_if, &to(t81, client4))?.reason,
        Reason::Pass,
    );

    // A policy that no longer blocks the name stops the blocking at once (the entry stays).
    let mut unblocked = img.clone();
    unblocked
        .domains
        .remove(&dname::hash_dotted(img.domain_seed, b"blocked.example"));
    h.dp.apply(Arc::new(unblocked), 2)?;
    check(
        &mut wrong,
        "after unblocking",
        h.run(a.lan_if, &to(cdn4, client4))?.reason,
        Reason::Pass,
    );
    h.dp.apply(Arc::new(img.clone()), 3)?;
    check(
        &mut wrong,
        "blocked again",
        h.run(a.lan_if, &to(cdn4, client4))?.reason,
        Reason::Domain,
    );
    // Learning off: the answer is still dropped, nothing new is learnt, learnt entries are ignored.
    let mut no_learn = img.clone();
    no_learn.learn_ttl_max_secs = 0;
    h.dp.apply(Arc::new(no_learn), 4)?;
    check(
        &mut wrong,
        "learning off",
        h.run(a.lan_if, &to(cdn4, client4))?.reason,
        Reason::Pass,
    );
    let n = table.entries()?.len();
    let got = h.run(
        a.internet_if,
        &frame(
            resolver4,
            client4,
            from53(chain_response("n.blocked.example", 60).bytes()),
        ),
    )?;
    check(
        &mut wrong,
        "answer with learning off",
        got.reason,
        Reason::Domain,
    );
    if table.entries()?.len() != n {
        wrong.push("learning off still learnt".into());
    }

    // Expiry: a one-second TTL.
    h.dp.apply(Arc::new(img.clone()), 5)?;
    let short = DnsResponse::new(
        "short.blocked.example",
        vec![Answer::a(
            TO_QUESTION.to_vec(),
            Ipv4Addr::new(198, 51, 100, 90),
            1,
        )],
    )
    .bytes();
    h.run(a.internet_if, &frame(resolver4, client4, from53(short)))?;
    let t90 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 90));
    check(
        &mut wrong,
        "short-lived, alive",
        h.run(a.lan_if, &to(t90, client4))?.reason,
        Reason::Domain,
    );
    std::thread::sleep(Duration::from_millis(1100));
    check(
        &mut wrong,
        "short-lived, expired",
        h.run(a.lan_if, &to(t90, client4))?.reason,
        Reason::Pass,
    );
    if table.entries()?.iter().any(|e| e.addr == t90) {
        wrong.push("expired entry not deleted on its hit".into());
    }
    // The userspace sweep deletes what expired without a hit.
    let left = table.entries()?.len();
    let swept = table.sweep(monotonic_ns() + 400_000_000_000)?;
    if swept != left || !table.entries()?.is_empty() {
        wrong.push(format!(
            "sweep: {swept} of {left}, left {:?}",
            table.entries()?
        ));
    }

    let after = table.stats()?;
    let d = |i: u32| after.get(i) - before.get(i);
    // Responses: www (v6), lan, dedicated, NXDOMAIN, cut, learning off, short = 7.
    // Inserts: 3 + 3 + 3 (same addresses again) + 1 (cut) + 1 (short) = 11.
    // Hits: v4, v6, cut, blocked again, short alive = 5. Stale: after unblocking = 1. Expired: 1.
    for (what, got, want) in [
        ("learn_responses", d(STAT_LEARN_RESPONSES), 7),
        ("learn_inserts", d(STAT_LEARN_INSERTS), 11),
        ("learn_hits", d(STAT_LEARN_HITS), 5),
        ("learn_stale", d(STAT_LEARN_STALE), 1),
        ("learn_expired", d(STAT_LEARN_EXPIRED), 1),
    ] {
        if got != want {
            wrong.push(format!("{what}: {got} (want {want})"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// One step of the differential run: a frame on a port, the reason a person expects, and a pause
/// before it (to let entries expire).
struct Step {
    name: String,
    ingress: u32,
    frame: Vec<u8>,
    want: Reason,
    sleep_ms: u64,
}

/// The same sequence through the real program and the reference model (with its own learnt
/// set): ClientHellos blocked, allowed, upper-case, malformed, truncated, without SNI; DNS
/// responses with A/AAAA answers, compressed owners and a CNAME chain; packets to a learnt address
/// while it lives and after it expired. Every step must give the hand label from both.
#[test]
fn reference_model_agrees() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
    let img = image(&a);
    h.dp.apply(Arc::new(img.clone()), 1)?;
    let routes = corpus_routes(&a);
    let ports = h.net.reference_ports();
    let mut learnt = gateway_reference::LearntSet::default();

    let hello = |n: &str| ClientHello::new(n).bytes();
    let mut bad_ext = hello("blocked.example");
    bad_ext[extensions_len_offset(32) + 4] = 0x7f;
    let big = ClientHello {
        pad_before: 1600,
        ..ClientHello::new("blocked.example")
    }
    .bytes();
    let (c4, r4, c6, r6) = (a.v4.client, a.v4.internet, a.v6.client, a.v6.internet);
    let step = |name: &str, ingress: u32, frame: Vec<u8>, want: Reason| Step {
        name: name.to_string(),
        ingress,
        frame,
        want,
        sleep_ms: 0,
    };
    let tls = |src: IpAddr, dst: IpAddr, p: Vec<u8>| frame(src, dst, segment(443, p));
    let syn = |src: IpAddr, dst: IpAddr| frame(src, dst, L4::tcp(40000, 443));
    let short = DnsResponse::new(
        "short.blocked.example",
        vec![Answer::a(
            TO_QUESTION.to_vec(),
            Ipv4Addr::new(198, 51, 100, 91),
            1,
        )],
    );
    let t91 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 91));
    let mut steps = vec![
        step(
            "sni blocked",
            a.lan_if,
            tls(c4, r4, hello("blocked.example")),
            Reason::Domain,
        ),
        step(
            "sni upper",
            a.lan_if,
            tls(c6, r6, hello("X.BLOCKED.example")),
            Reason::Domain,
        ),
        step(
            "sni allowed",
            a.lan_if,
            tls(c4, r4, hello("example.org")),
            Reason::Pass,
        ),
        step(
            "sni exception",
            a.lan_if,
            tls(c4, r4, hello("ok.blocked.example")),
            Reason::Pass,
        ),
        step(
            "sni none",
            a.lan_if,
            tls(c4, r4, ClientHello::without_sni().bytes()),
            Reason::Pass,
        ),
        step(
            "sni bad extension",
            a.lan_if,
            tls(c4, r4, bad_ext),
            Reason::Malformed,
        ),
        step(
            "sni truncated",
            a.lan_if,
            tls(c4, r4, big[..1400].to_vec()),
            Reason::Malformed,
        ),
        step("sni whole big", a.lan_if, tls(c6, r6, big), Reason::Domain),
        step(
            "sni to blocklisted",
            a.lan_if,
            tls(c4, a.v4.blocked_exact, hello("example.org")),
            Reason::Blocklist,
        ),
        step(
            "before learning",
            a.lan_if,
            syn(c4, IpAddr::V4(CDN4)),
            Reason::Pass,
        ),
        step(
            "answer, allowed name",
            a.internet_if,
            frame(r4, c4, from53(chain_response("example.org", 60).bytes())),
            Reason::Pass,
        ),
        step(
            "answer, blocked, CNAME chain",
            a.internet_if,
            frame(
                r4,
                c4,
                from53(chain_response("cdn.blocked.example", 600).bytes()),
            ),
            Reason::Domain,
        ),
        step(
            "to learnt v4",
            a.lan_if,
            syn(c4, IpAddr::V4(CDN4)),
            Reason::Domain,
        ),
        step(
            "to learnt v4 (2nd)",
            a.lan_if,
            syn(c4, IpAddr::V4(CDN4B)),
            Reason::Domain,
        ),
        step(
            "to learnt v6",
            a.lan_if,
            syn(c6, IpAddr::V6(CDN6)),
            Reason::Domain,
        ),
        step(
            "udp to learnt",
            a.lan_if,
            frame(c4, IpAddr::V4(CDN4), L4::udp(5000, 443)),
            Reason::Domain,
        ),
        step(
            "answer, blocked, on the dedicated port",
            a.dedicated_if,
            frame(a.v4.dedicated_host, c4, from53(short.bytes())),
            Reason::Domain,
        ),
        step("to short-lived", a.lan_if, syn(c4, t91), Reason::Domain),
        Step {
            sleep_ms: 1100,
            ..step(
                "to short-lived, expired",
                a.lan_if,
                syn(c4, t91),
                Reason::Pass,
            )
        },
        step(
            "answer from a blocklisted source",
            a.internet_if,
            frame(
                a.v4.blocked_exact,
                c4,
                from53(chain_response("z.blocked.example", 60).bytes()),
            ),
            Reason::BlocklistIn,
        ),
    ];
    let mut wrong = Vec::new();
    for s in steps.drain(..) {
        if s.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(s.sleep_ms));
        }
        let xdp = h.run(s.ingress, &s.frame)?.reason;
        let reference = gateway_reference::evaluate_beyond(
            &img,
            true,
            &ports,
            &routes,
            s.ingress,
            &s.frame,
            &mut learnt,
            monotonic_ns(),
        );
        if xdp != s.want || reference != s.want {
            wrong.push(format!(
                "{}: xdp {}, reference {}, want {}",
                s.name,
                xdp.as_str(),
                reference.as_str(),
                s.want.as_str()
            ));
        }
    }
    // Both learnt the same addresses, each with the same node.
    let mut kernel: Vec<(IpAddr, u64, u8)> =
        h.dp.learnt_table()?
            .entries()?
            .iter()
            .map(|e| (e.addr, e.value.hash, e.value.whole))
            .collect();
    let mut model: Vec<(IpAddr, u64, u8)> = learnt
        .entries
        .iter()
        .map(|(k, v)| (*k, v.hash, v.whole))
        .collect();
    kernel.sort();
    model.sort();
    if kernel != model {
        wrong.push(format!("learnt: kernel {kernel:?}, model {model:?}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// With `action = "nxdomain"` only a DNS query is answered in place (XDP_TX): a blocked
/// ClientHello, a DNS response for a blocked name and a packet to a learnt address are plain drops.
/// The ClientHello's drop event names its server_name and the response's its question, with the
/// listed name that matched; a learnt-address drop carries no name (its packet has none) and
/// stays a plain event.
#[test]
fn only_queries_are_answered_and_sni_drops_name_the_server() -> anyhow::Result<()> {
    use gateway_common::event::{
        DNS_DROPPED, DNS_VIA_RESPONSE, DNS_VIA_SNI, EVENT_DROP, EVENT_DROP_DNS,
    };
    use gateway_common::values::SETTING_DNS_NXDOMAIN;
    use gateway_dataplane::XDP_DROP;
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
    let mut img = image(&a);
    img.settings_flags |= SETTING_DNS_NXDOMAIN;
    let listed = dname::hash_dotted(img.domain_seed, b"blocked.example");
    h.dp.apply(Arc::new(img), 1)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _guard = rt.enter();
    let mut reader = h.dp.event_reader()?;

    // (what, ingress, frame, where the event says it read "www.blocked.example", if it names it)
    let hello = ClientHello::new("www.blocked.example").bytes();
    let response = chain_response("www.blocked.example", 600).bytes();
    let cases = [
        (
            "ClientHello",
            a.lan_if,
            frame(a.v4.client, a.v4.internet, segment(443, hello)),
            Some(DNS_VIA_SNI),
        ),
        (
            "DNS response",
            a.internet_if,
            frame(a.v6.internet, a.v6.client, from53(response)),
            Some(DNS_VIA_RESPONSE),
        ),
        // The response taught CDN6; a SYN to it (no payload: no SNI to read) meets step 2.2c.
        (
            "learnt address",
            a.lan_if,
            frame(a.v6.client, IpAddr::V6(CDN6), L4::tcp(40000, 443)),
            None,
        ),
    ];
    for (what, ingress, f, via) in cases {
        let r = h.run(ingress, &f)?;
        anyhow::ensure!(
            r.reason == Reason::Domain && r.action == XDP_DROP,
            "{what}: {} action {}",
            r.reason.as_str(),
            r.action
        );
        let rec = reader
            .try_next()
            .ok_or_else(|| anyhow::anyhow!("no event for the {what}"))?;
        anyhow::ensure!(rec.event.reason() == Some(Reason::Domain), "{what}");
        if let Some(via) = via {
            let dns = rec
                .dns
                .ok_or_else(|| anyhow::anyhow!("{what}: event without the name"))?;
            anyhow::ensure!(rec.event.kind == EVENT_DROP_DNS, "{what}");
            anyhow::ensure!(
                dns.name().as_deref() == Some("www.blocked.example"),
                "{what}: {dns:?}"
            );
            anyhow::ensure!(
                dns.matched().as_deref() == Some("*.blocked.example") && dns.matched_hash == listed,
                "{what}: {dns:?}"
            );
            anyhow::ensure!(
                dns.answer == DNS_DROPPED && dns.via == via,
                "{what}: {dns:?}"
            );
        } else {
            anyhow::ensure!(
                rec.dns.is_none() && rec.event.kind == EVENT_DROP,
                "{what}: {:?}",
                rec.dns
            );
        }
    }
    Ok(())
}
