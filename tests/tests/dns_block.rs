//! Domain blocking in the real XDP program (issue 6, verdict step 2.2): DNS queries from the lan for
//! listed names drop as `domain`; exceptions, unlisted names, responses and non-DNS pass; questions
//! that cannot be walked are `malformed` (or pass with `[domains] malformed = "pass"`). The
//! reference model's side of this comes with the corpus (step 3). Needs root: fails without it.
#![allow(clippy::unwrap_used)] // reason: test code

use std::net::IpAddr;
use std::sync::Arc;

use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use gateway_common::Reason;
use gateway_common::dname::{self, BLOCK_APEX};
use gateway_common::values::{
    DomainValue, SETTING_DNS_MALFORMED_PASS, SETTING_DNS_NXDOMAIN, SETTING_DNS_SINKHOLE_V4,
    SETTING_DNS_SINKHOLE_V6,
};
use gateway_dataplane::{XDP_DROP, XDP_PASS, XDP_TX};
use gateway_policy::image::{MapImage, Sinkhole};
use gateway_tests::{
    corpus::{
        CorpusAddrs, Ipv4, Ipv6, L4, TPID_8021Q, Tcp, Udp, corpus_image, corpus_routes, dns_image,
    },
    testnet::XdpHarness,
};

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

/// [`dns_image`], plus a block below the exception: `bad.ok.blocked.example` (the longest listed
/// suffix decides).
fn image(addrs: &CorpusAddrs) -> MapImage {
    let mut img = dns_image(addrs);
    img.domain_feeds[0].entries += 1;
    let bad = dname::hash_dotted(img.domain_seed, b"bad.ok.blocked.example");
    img.domains.insert(bad, DomainValue::new(BLOCK_APEX, 0));
    img
}

#[test]
fn dns_queries_for_listed_names_drop_as_domain() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
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

/// A frame with `vlans` 802.1Q tags and a `trailer` of Ethernet padding after the IP packet.
fn tagged(src: IpAddr, dst: IpAddr, l4: L4, vlans: u16, trailer: usize) -> Vec<u8> {
    let mut f = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4::new(s, d, l4).frame(),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6::new(s, d, l4).frame(),
        _ => unreachable!("one family"),
    };
    for v in 0..vlans {
        f = f.vlan(TPID_8021Q, 10 + v);
    }
    f.trailer = trailer;
    f.bytes()
}

/// Checks `out` is the answer to `query_frame` (a UDP DNS query) and returns its DNS message.
/// Everything a client's stack checks: addresses swapped at every layer, lengths, checksums.
fn answer_of(query_frame: &[u8], out: &[u8], vlans: usize) -> Result<Vec<u8>, String> {
    let l3 = 14 + 4 * vlans;
    if out[..6] != query_frame[6..12] || out[6..12] != query_frame[..6] {
        return Err("MAC addresses not swapped".into());
    }
    if out[12..l3] != query_frame[12..l3] {
        return Err("VLAN tags / ethertype changed".into());
    }
    let (src, dst, l4) = if out[l3] >> 4 == 4 {
        let ip = Ipv4Packet::new_checked(&out[l3..]).map_err(|e| format!("IPv4: {e}"))?;
        if !ip.verify_checksum() {
            return Err("IPv4 header checksum".into());
        }
        if usize::from(ip.total_len()) != out.len() - l3 {
            return Err(format!(
                "IPv4 total length {} of {}",
                ip.total_len(),
                out.len() - l3
            ));
        }
        let q = Ipv4Packet::new_unchecked(&query_frame[l3..]);
        if ip.src_addr() != q.dst_addr() || ip.dst_addr() != q.src_addr() {
            return Err("IPv4 addresses not swapped".into());
        }
        (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
            l3 + 20,
        )
    } else {
        let ip = Ipv6Packet::new_checked(&out[l3..]).map_err(|e| format!("IPv6: {e}"))?;
        if usize::from(ip.payload_len()) != out.len() - l3 - 40 {
            return Err(format!("IPv6 payload length {}", ip.payload_len()));
        }
        let q = Ipv6Packet::new_unchecked(&query_frame[l3..]);
        if ip.src_addr() != q.dst_addr() || ip.dst_addr() != q.src_addr() {
            return Err("IPv6 addresses not swapped".into());
        }
        (
            IpAddress::Ipv6(ip.src_addr()),
            IpAddress::Ipv6(ip.dst_addr()),
            l3 + 40,
        )
    };
    let udp = UdpPacket::new_checked(&out[l4..]).map_err(|e| format!("UDP: {e}"))?;
    if usize::from(udp.len()) != out.len() - l4 {
        return Err(format!("UDP length {}", udp.len()));
    }
    if udp.checksum() == 0 || !udp.verify_checksum(&src, &dst) {
        return Err(format!("UDP checksum {:#06x}", udp.checksum()));
    }
    let q = UdpPacket::new_unchecked(&query_frame[l4..]);
    if udp.src_port() != q.dst_port() || udp.dst_port() != q.src_port() {
        return Err("UDP ports not swapped".into());
    }
    Ok(udp.payload().to_vec())
}

/// Checks `out` is a TCP segment back to the sender of `query_frame` (addresses and ports swapped,
/// lengths, checksums) and returns its (seq, ack, flags, payload).
fn tcp_answer_of(
    query_frame: &[u8],
    out: &[u8],
    l4: usize,
) -> Result<(u32, u32, u8, Vec<u8>), String> {
    if out[..6] != query_frame[6..12] || out[6..12] != query_frame[..6] {
        return Err("MAC addresses not swapped".into());
    }
    let (src, dst) = if out[14] >> 4 == 4 {
        let ip = Ipv4Packet::new_checked(&out[14..]).map_err(|e| format!("IPv4: {e}"))?;
        if !ip.verify_checksum() || usize::from(ip.total_len()) != out.len() - 14 {
            return Err("IPv4 checksum or length".into());
        }
        (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        )
    } else {
        let ip = Ipv6Packet::new_checked(&out[14..]).map_err(|e| format!("IPv6: {e}"))?;
        if usize::from(ip.payload_len()) != out.len() - 54 {
            return Err("IPv6 payload length".into());
        }
        (
            IpAddress::Ipv6(ip.src_addr()),
            IpAddress::Ipv6(ip.dst_addr()),
        )
    };
    let tcp = TcpPacket::new_checked(&out[l4..]).map_err(|e| format!("TCP: {e}"))?;
    if !tcp.verify_checksum(&src, &dst) {
        return Err(format!("TCP checksum {:#06x}", tcp.checksum()));
    }
    let q = TcpPacket::new_unchecked(&query_frame[l4..]);
    if tcp.src_port() != q.dst_port() || tcp.dst_port() != q.src_port() {
        return Err("TCP ports not swapped".into());
    }
    Ok((
        tcp.seq_number().0 as u32,
        tcp.ack_number().0 as u32,
        out[l4 + 13],
        tcp.payload().to_vec(),
    ))
}

fn edns(mut q: Vec<u8>) -> Vec<u8> {
    q[11] = 1; // ARCOUNT
    // OPT: root name, TYPE 41, UDP size 1232, no extended RCODE/flags, no options.
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    q
}

fn typed(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = query(&wire(name));
    let n = q.len();
    q[n - 4..n - 2].copy_from_slice(&qtype.to_be_bytes());
    q
}

#[test]
fn blocked_queries_are_answered_in_place() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
    let mut img = image(&a);
    img.settings_flags |= SETTING_DNS_NXDOMAIN;
    h.dp.apply(Arc::new(img.clone()), 1)?;
    let mut wrong = Vec::new();
    let name = "www.blocked.example";
    let question = {
        let mut q = wire(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    };
    // NXDOMAIN: header (id kept, QR RD RA, RCODE 3, QDCOUNT 1) and the question, nothing else.
    let mut nx = vec![0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
    nx.extend_from_slice(&question);
    for (src, dst) in [(a.v4.client, a.v4.internet), (a.v6.client, a.v6.internet)] {
        for (what, msg, vlans, trailer) in [
            ("plain", query(&wire(name)), 0, 0),
            ("EDNS OPT stripped", edns(query(&wire(name))), 0, 0),
            ("two VLAN tags", query(&wire(name)), 2, 0),
            ("Ethernet padding", query(&wire(name)), 0, 20),
        ] {
            let f = tagged(src, dst, udp53(msg), vlans, trailer);
            let r = h.run(a.lan_if, &f)?;
            if r.action != XDP_TX || r.reason != Reason::Domain {
                wrong.push(format!(
                    "{what} from {src}: action {} {}",
                    r.action,
                    r.reason.as_str()
                ));
                continue;
            }
            match answer_of(&f, &r.frame, usize::from(vlans)) {
                Ok(dns) if dns == nx => {}
                Ok(dns) => wrong.push(format!("{what} from {src}: answer {dns:02x?}")),
                Err(e) => wrong.push(format!("{what} from {src}: {e}")),
            }
        }
        // A listed name over UDP with action drop stays a plain drop (checked in the other test);
        // allowed names pass untouched.
        let ok = tagged(src, dst, udp53(query(&wire("www.example.org"))), 0, 0);
        let r = h.run(a.lan_if, &ok)?;
        if r.action != XDP_PASS || r.frame != ok {
            wrong.push(format!("allowed name from {src}: action {}", r.action));
        }
    }

    // Sinkhole: A and AAAA get one record pointing at the question; other types NXDOMAIN.
    let mut sink = img.clone();
    sink.settings_flags |= SETTING_DNS_SINKHOLE_V4 | SETTING_DNS_SINKHOLE_V6;
    sink.sinkhole = Sinkhole {
        v4: Some("192.0.2.53".parse()?),
        v6: Some("2001:db8::53".parse()?),
        ttl: 60,
    };
    h.dp.apply(Arc::new(sink), 2)?;
    let answer = |qtype: u16, rdata: &[u8]| {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&wire(name));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0xc0, 0x0c]);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, rdata.len() as u8]);
        m.extend_from_slice(rdata);
        m
    };
    let mut mx_nx = nx.clone();
    let n = mx_nx.len();
    mx_nx[n - 4..n - 2].copy_from_slice(&15u16.to_be_bytes());
    let cases = [
        ("A", typed(name, 1), answer(1, &[192, 0, 2, 53])),
        (
            "AAAA",
            edns(typed(name, 28)),
            answer(28, &"2001:db8::53".parse::<std::net::Ipv6Addr>()?.octets()),
        ),
        ("MX", typed(name, 15), mx_nx),
    ];
    for (src, dst) in [(a.v4.client, a.v4.internet), (a.v6.client, a.v6.internet)] {
        for (what, msg, want) in &cases {
            let f = tagged(src, dst, udp53(msg.clone()), 1, 0);
            let r = h.run(a.lan_if, &f)?;
            if r.action != XDP_TX || r.reason != Reason::Domain {
                wrong.push(format!("sinkhole {what} from {src}: action {}", r.action));
                continue;
            }
            match answer_of(&f, &r.frame, 1) {
                Ok(dns) if dns == *want => {}
                Ok(dns) => wrong.push(format!("sinkhole {what} from {src}: {dns:02x?}")),
                Err(e) => wrong.push(format!("sinkhole {what} from {src}: {e}")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// DNS over TCP: the message after the two-byte length in a segment is judged like a UDP one; a
/// blocked query is answered in place with a segment that continues the client's stream.
#[test]
fn tcp_queries_are_judged_and_blocked_ones_answered() -> anyhow::Result<()> {
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
    let mut img = image(&a);
    img.settings_flags |= SETTING_DNS_NXDOMAIN;
    h.dp.apply(Arc::new(img), 1)?;
    let seg = |payload: Vec<u8>, flags: u8| {
        L4::Tcp(Tcp {
            flags,
            payload,
            ..Tcp::new(40000, 53)
        })
    };
    let framed = |m: Vec<u8>| {
        let mut p = (m.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(&m);
        p
    };
    let psh_ack = 0x18;
    let blocked = query(&wire("x.blocked.example"));
    let cases: Vec<(&str, L4, Reason, u32)> = vec![
        ("SYN", seg(Vec::new(), Tcp::SYN), Reason::Pass, XDP_PASS),
        (
            "blocked",
            seg(framed(blocked.clone()), psh_ack),
            Reason::Domain,
            XDP_TX,
        ),
        (
            "allowed",
            seg(framed(query(&wire("www.example.org"))), psh_ack),
            Reason::Pass,
            XDP_PASS,
        ),
        (
            "message longer than the segment",
            seg(framed(blocked.clone())[..20].to_vec(), psh_ack),
            Reason::Malformed,
            XDP_DROP,
        ),
        (
            "length prefix alone",
            seg(vec![0], psh_ack),
            Reason::Malformed,
            XDP_DROP,
        ),
        (
            "compressed",
            seg(framed(query(&[0xc0, 0x0c])), psh_ack),
            Reason::Malformed,
            XDP_DROP,
        ),
    ];
    let mut wrong = Vec::new();
    for (src, dst) in [(a.v4.client, a.v4.internet), (a.v6.client, a.v6.internet)] {
        for (what, l4, reason, action) in &cases {
            let r = h.run(a.lan_if, &frame(src, dst, l4.clone()))?;
            if r.reason != *reason || r.action != *action {
                wrong.push(format!(
                    "{what} from {src}: {} action {}",
                    r.reason.as_str(),
                    r.action
                ));
            }
        }
        // The answer: seq = the client's ack, ack = its seq + data, PSH|ACK, the NXDOMAIN message
        // after its length, every checksum right.
        let query = Tcp {
            flags: psh_ack,
            seq: 0x1000_0000,
            payload: framed(blocked.clone()),
            ..Tcp::new(40000, 53)
        };
        let mut f = frame(src, dst, L4::Tcp(query.clone()));
        let l4 = if src.is_ipv4() { 34 } else { 54 };
        f[l4 + 8..l4 + 12].copy_from_slice(&0x2000_0000u32.to_be_bytes()); // the client's ack
        let r = h.run(a.lan_if, &f)?;
        match tcp_answer_of(&f, &r.frame, l4) {
            Ok((seq, ack, flags, payload)) => {
                let mut nx = blocked.clone();
                nx[2] = 0x81;
                nx[3] = 0x83;
                let want = framed(nx);
                let data = u32::try_from(query.payload.len())?;
                if (seq, ack, flags) != (0x2000_0000, 0x1000_0000 + data, 0x18) || payload != want {
                    wrong.push(format!(
                        "TCP answer from {src}: seq {seq:#x} ack {ack:#x} flags {flags:#x} payload {payload:02x?}"
                    ));
                }
            }
            Err(e) => wrong.push(format!("TCP answer from {src}: {e}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// The drop event of a `domain` verdict carries the query: name, QTYPE, the listed name that
/// matched (and its hash), the domain feed as the rule, and whether it was answered.
#[test]
fn domain_drop_events_carry_the_query_name() -> anyhow::Result<()> {
    use gateway_common::event::{DNS_NXDOMAIN, EVENT_DROP_DNS};
    let mut h = XdpHarness::new(|net| corpus_routes(&net.corpus_addrs()))?;
    let a = h.net.corpus_addrs();
    let mut img = image(&a);
    img.settings_flags |= SETTING_DNS_NXDOMAIN;
    let seed = img.domain_seed;
    h.dp.apply(Arc::new(img), 1)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _guard = rt.enter();
    let mut reader = h.dp.event_reader()?;
    let tcp_query = {
        let m = typed("exact.example", 28);
        let mut p = (m.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(&m);
        L4::Tcp(Tcp {
            flags: 0x18,
            payload: p,
            ..Tcp::new(40001, 53)
        })
    };
    // (frame, name, matched, qtype, feed, answer); distinct sources: the rate limit is per source.
    let cases = [
        (
            frame(
                a.v4.client,
                a.v4.internet,
                udp53(query(&wire("www.blocked.example"))),
            ),
            "www.blocked.example",
            "*.blocked.example",
            1u16,
            0u32,
            DNS_NXDOMAIN,
        ),
        (
            frame(a.v6.client, a.v6.internet, tcp_query),
            "exact.example",
            "exact.example",
            28,
            1,
            DNS_NXDOMAIN,
        ),
    ];
    for (f, name, matched, qtype, feed, answer) in cases {
        let r = h.run(a.lan_if, &f)?;
        anyhow::ensure!(r.reason == Reason::Domain, "{name}: {}", r.reason.as_str());
        let rec = reader
            .try_next()
            .ok_or_else(|| anyhow::anyhow!("no event for {name}"))?;
        let dns = rec
            .dns
            .ok_or_else(|| anyhow::anyhow!("{name}: event without DNS detail"))?;
        anyhow::ensure!(rec.event.kind == EVENT_DROP_DNS && rec.event.rule == feed);
        anyhow::ensure!(rec.event.reason() == Some(Reason::Domain));
        anyhow::ensure!(dns.name().as_deref() == Some(name), "{dns:?}");
        anyhow::ensure!(dns.matched().as_deref() == Some(matched), "{dns:?}");
        let listed = matched.trim_start_matches("*.");
        anyhow::ensure!(dns.matched_hash == dname::hash_dotted(seed, listed.as_bytes()));
        anyhow::ensure!(dns.qtype == qtype && dns.answer == answer, "{dns:?}");
    }
    // Other drops stay plain events.
    let blocked = frame(
        a.v4.client,
        a.v4.blocked_exact,
        L4::Tcp(Tcp::new(40002, 443)),
    );
    let r = h.run(a.lan_if, &blocked)?;
    anyhow::ensure!(r.reason == Reason::Blocklist);
    let rec = reader
        .try_next()
        .ok_or_else(|| anyhow::anyhow!("no blocklist event"))?;
    anyhow::ensure!(rec.dns.is_none() && rec.event.kind == gateway_common::event::EVENT_DROP);
    Ok(())
}
