//! Domain blocking beyond DNS queries (issue 6 item 3): ns/packet of a TLS ClientHello whose
//! server_name is allowed or blocked, of a packet to a learnt blocked address, and of a DNS
//! response for a blocked name (the learning path), beside a plain TCP packet and the pass-only
//! program in the same run, with a domain feed of `NAMES` names in force.
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    sync::Arc,
};

use gateway_common::Role;
use gateway_dataplane::{Dataplane, Program, Runner};
use gateway_tests::{
    corpus::{Frame, L4, Tcp, Udp},
    domain_packets::{Answer, ClientHello, DnsResponse, TO_QUESTION},
    testnet::TestNet,
};

use crate::{CLIENT, INTERNET, REPEAT};

/// Listed names besides `blocked.example`.
const NAMES: usize = 100_000;
/// The address a blocked name's answer teaches.
const LEARNT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);

pub fn run(
    dp: &mut Dataplane,
    gw: &Runner,
    net: &TestNet,
    profile: &gateway_policy::Profile,
    dir: &Path,
    generation: u64,
) -> anyhow::Result<()> {
    let feed = dir.join("names.list");
    let mut text = String::from("blocked.example\n");
    for i in 0..NAMES {
        let _ = writeln!(text, "n{i}.bench-names.example");
    }
    std::fs::write(&feed, text)?;
    let policy = crate::write_policy(dir, &crate::write_feed(dir, 1_000)?, None)?;
    // The same policy without domain feeds first: what a plain packet costs without the learnt-
    // address lookup that domain feeds add to every lan packet.
    let plain_syn = Frame::ip(
        IpAddr::V4(CLIENT),
        IpAddr::V4(INTERNET),
        L4::tcp(40000, 443),
    )
    .bytes();
    let without = gateway_policy::compile(&policy, profile)?.image;
    dp.apply(Arc::new(without), generation)?;
    let (_, t_without) = gw.run(net.ifindex_of(Role::Lan), &plain_syn, REPEAT)?;
    let mut body = std::fs::read_to_string(&policy)?;
    let _ = write!(
        body,
        "\n[[domain_feed]]\nname = \"bench-names\"\npath = \"{}\"\nformat = \"list\"\n\n[domains]\naction = \"drop\"\nsni_ports = [443]\nlearn_ttl_max_secs = 300\n",
        feed.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("names.list")
    );
    std::fs::write(&policy, body)?;
    let image = gateway_policy::compile(&policy, profile)?.image;
    dp.apply(Arc::new(image), generation + 1)?;
    let base = dp.runner(Program::PassOnly)?;

    let (client, internet) = (IpAddr::V4(CLIENT), IpAddr::V4(INTERNET));
    let hello = |name: &str| {
        Frame::ip(
            client,
            internet,
            L4::Tcp(Tcp {
                flags: 0x18,
                payload: ClientHello::new(name).bytes(),
                ..Tcp::new(40000, 443)
            }),
        )
        .bytes()
    };
    let answer = DnsResponse::new(
        "www.blocked.example",
        vec![Answer::a(TO_QUESTION.to_vec(), LEARNT, 300)],
    )
    .bytes();
    let response = Frame::ip(
        internet,
        client,
        L4::Udp(Udp {
            payload: answer,
            ..Udp::new(53, 40000)
        }),
    )
    .bytes();
    let lan = net.ifindex_of(Role::Lan);
    let inet = net.ifindex_of(Role::Internet);
    // Teach the learnt address once, so the "to learnt" case hits a live entry.
    gw.run(inet, &response, 1)?;
    let cases: [(&str, u32, Vec<u8>); 5] = [
        (
            "lan→internet tcp SYN (plain)",
            lan,
            Frame::ip(client, internet, L4::tcp(40000, 443)).bytes(),
        ),
        ("ClientHello, allowed name", lan, hello("www.example.org")),
        (
            "ClientHello, blocked name",
            lan,
            hello("www.blocked.example"),
        ),
        (
            "lan→learnt address tcp SYN",
            lan,
            Frame::ip(client, IpAddr::V4(LEARNT), L4::tcp(40000, 443)).bytes(),
        ),
        ("DNS answer for blocked name (learn)", inet, response),
    ];
    println!(
        "\nSNI and learnt addresses ({} listed names, policy with a 1k blocklist):",
        NAMES + 1
    );
    println!(
        "  {:<38} {:>10} {:>12} {:>9} {:>7}",
        "packet", "ns/packet", "pass-only ns", "vs plain", "ratio"
    );
    println!(
        "  {:<38} {:>10.1}   (same policy without domain feeds)",
        "lan→internet tcp SYN, no domain feeds",
        t_without.as_nanos() as f64
    );
    let mut plain = None;
    for (name, ifindex, frame) in &cases {
        let (_, t_gw) = gw.run(*ifindex, frame, REPEAT)?;
        let (_, t_base) = base.run(*ifindex, frame, REPEAT)?;
        let (g, b) = (t_gw.as_nanos() as f64, t_base.as_nanos() as f64);
        let p = *plain.get_or_insert(g);
        println!(
            "  {:<38} {:>10.1} {:>12.1} {:>8.2}x {:>6.1}x",
            name,
            g,
            b,
            g / p.max(0.1),
            g / b.max(0.1)
        );
    }
    Ok(())
}
