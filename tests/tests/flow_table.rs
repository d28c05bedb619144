//! Flow accounting and drop events of the real XDP program (BPF_PROG_TEST_RUN, real maps, real FIB
//! in a private namespace), read back through the dataplane's flow-table and event-reader API.
//! Needs root: fails, never skips, without it.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use anyhow::{Context as _, bail, ensure};
use gateway_common::{
    Reason, Role,
    event::{DropEvent, EVENT_DROP},
    flow::{FAMILY_V4, FAMILY_V6, FlowKey, FlowValue, NO_RULE},
    maps::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    values::DatapathConfig,
};
use gateway_dataplane::{
    Dataplane, DataplaneError, FlowEntry, LoadOptions, Persistence, Program, XDP_DROP, XDP_PASS,
};
use gateway_policy::image::{AlertLimit, MapImage};
use gateway_tests::{
    corpus::{CorpusAddrs, Frame, L4, SYS_ELSEWHERE, SYS_RECORDS, corpus_image, corpus_routes},
    testnet::{TestNet, XdpHarness, require_root},
};

/// The feed id of every blocklist entry of the corpus image.
const CORPUS_FEED: u32 = 1;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

fn harness(options: LoadOptions) -> anyhow::Result<(XdpHarness, CorpusAddrs)> {
    let h = XdpHarness::with_options(|net| corpus_routes(&net.corpus_addrs()), options)?;
    let addrs = h.net.corpus_addrs();
    addrs.validate()?;
    Ok((h, addrs))
}

fn apply(h: &mut XdpHarness, image: MapImage, generation: u64) -> anyhow::Result<()> {
    h.dp.apply(Arc::new(image), generation)?;
    Ok(())
}

/// Runs one frame; returns the action.
fn run(h: &XdpHarness, ingress: u32, frame: &[u8]) -> anyhow::Result<u32> {
    Ok(h.runner.run(ingress, frame, 1)?.0)
}

fn find<'a>(entries: &'a [FlowEntry], key: &FlowKey) -> anyhow::Result<&'a FlowValue> {
    entries
        .iter()
        .find(|e| e.key == *key)
        .map(|e| &e.value)
        .with_context(|| {
            format!(
                "no flow {:?} {}:{} -> {}:{} proto {} on {}; table has {} entries",
                key.family,
                fmt_addr(key.src_addr()),
                key.sport(),
                fmt_addr(key.dst_addr()),
                key.dport(),
                key.proto,
                key.ifindex,
                entries.len()
            )
        })
}

fn fmt_addr(a: Option<IpAddr>) -> String {
    a.map_or_else(|| "?".into(), |a| a.to_string())
}

/// What one flow entry must say.
struct Want {
    packets: u64,
    bytes: u64,
    tcp_flags: u32,
    reason: Reason,
    rule: u32,
    egress: u32,
}

fn check(entries: &[FlowEntry], key: &FlowKey, want: &Want, what: &str) -> anyhow::Result<()> {
    let v = find(entries, key).context(what.to_owned())?;
    let got = (
        v.packets,
        v.bytes,
        v.tcp_flags,
        v.reason(),
        v.rule,
        v.egress_ifindex,
    );
    let expected = (
        want.packets,
        want.bytes,
        want.tcp_flags,
        Some(want.reason),
        want.rule,
        want.egress,
    );
    ensure!(
        got == expected,
        "{what}: (packets, bytes, tcp_flags, reason, rule, egress) = {got:?}, want {expected:?}"
    );
    ensure!(
        v.first_ns > 0 && v.first_ns <= v.last_ns,
        "{what}: first_ns {} last_ns {}",
        v.first_ns,
        v.last_ns
    );
    Ok(())
}

#[test]
fn verdicts_are_accounted_per_flow_with_rule_and_egress() -> anyhow::Result<()> {
    let (mut h, a) = harness(LoadOptions::default())?;
    apply(&mut h, corpus_image(&a), 1)?;
    let (lan, ded, inet) = (a.lan_if, a.dedicated_if, a.internet_if);
    let (v4, v6) = (&a.v4, &a.v6);
    let mut expected_entries = 0;

    // A TCP connection's packets, SYN then ACK then FIN, lan → Internet: one entry, flags OR-ed.
    // No FIB lookup is needed for it on the lan port, so the egress is unknown (0).
    let mut bytes = 0;
    for flags in [SYN, ACK, ACK | FIN] {
        let f = Frame::ip(v4.client, v4.internet, L4::tcp(40000, 443))
            .tcp(|t| t.flags = flags)
            .bytes();
        bytes += f.len() as u64;
        ensure!(run(&h, lan, &f)? == XDP_PASS, "client → internet passes");
    }
    expected_entries += 1;
    let conn = FlowKey::new(lan, IPPROTO_TCP, v4.client, 40000, v4.internet, 443);

    // To a shared system over the dedicated port: the system id, and the FIB's egress port.
    let to_shared = Frame::ip(v4.client, v4.shared, L4::tcp(40001, 443)).bytes();
    ensure!(run(&h, lan, &to_shared)? == XDP_PASS, "client → records");
    expected_entries += 1;
    // A shared system routed to the Internet: dropped, system id, the Internet port.
    let via_inet = Frame::ip(v4.lan_host, v4.shared_internet, L4::tcp(40002, 443)).bytes();
    ensure!(run(&h, lan, &via_inet)? == XDP_DROP, "shared via internet");
    expected_entries += 1;
    // Not allowed (ssh to records from a lan host): system id, no route looked up.
    let not_allowed = Frame::ip(v4.lan_host, v4.shared, L4::tcp(40003, 22)).bytes();
    ensure!(run(&h, lan, &not_allowed)? == XDP_DROP, "not allowed");
    expected_entries += 1;
    // Blocklists: the feed id, both directions.
    let blocked = Frame::ip(v4.client, v4.blocked_exact, L4::tcp(40004, 443)).bytes();
    ensure!(run(&h, lan, &blocked)? == XDP_DROP, "blocklist");
    expected_entries += 1;
    let blocked_in = Frame::ip(v6.blocked_in_net, v6.client, L4::udp(53, 40005)).bytes();
    ensure!(run(&h, inet, &blocked_in)? == XDP_DROP, "blocklist_in");
    expected_entries += 1;
    // Internet → lan: judged with a FIB lookup, egress the lan port.
    let inbound = Frame::ip(v4.internet, v4.client, L4::udp(443, 40006)).bytes();
    ensure!(run(&h, inet, &inbound)? == XDP_PASS, "internet → lan");
    expected_entries += 1;
    // ICMPv6 echo: type and code in the destination port, no source port.
    let echo = Frame::ip(v6.client, v6.internet, L4::echo()).bytes();
    ensure!(run(&h, lan, &echo)? == XDP_PASS, "echo v6");
    expected_entries += 1;
    // ICMP (v4) echo from the dedicated side to the lan: FIB → lan port.
    let echo4 = Frame::ip(v4.shared, v4.client, L4::echo()).bytes();
    ensure!(
        run(&h, ded, &echo4)? == XDP_PASS,
        "echo v4 from a shared system"
    );
    expected_entries += 1;
    // A later fragment: the protocol of the fragment, no ports.
    let frag = Frame::ip(v4.client, v4.internet, L4::raw(IPPROTO_UDP, &[0xab; 16]))
        .fragment(185, false)
        .bytes();
    ensure!(run(&h, lan, &frag)? == XDP_PASS, "later fragment");
    expected_entries += 1;

    // No 5-tuple, no flow: not IP, malformed, an unknown port.
    let arp = Frame::arp(ipv4(v4.client)?, ipv4(v4.gateway)?).bytes();
    ensure!(run(&h, lan, &arp)? == XDP_PASS, "arp");
    let truncated = Frame::ip(v4.client, v4.internet, L4::tcp(40007, 443))
        .truncate(30)
        .bytes();
    ensure!(run(&h, lan, &truncated)? == XDP_DROP, "truncated");
    let unknown = Frame::ip(v4.client, v4.internet, L4::tcp(40008, 443)).bytes();
    ensure!(run(&h, a.unknown_if, &unknown)? == XDP_DROP, "unknown port");

    let table = h.dp.flow_table()?;
    let entries = table.entries()?;
    let one = |f: &[u8]| Want {
        packets: 1,
        bytes: f.len() as u64,
        tcp_flags: 0,
        reason: Reason::Pass,
        rule: NO_RULE,
        egress: 0,
    };
    check(
        &entries,
        &conn,
        &Want {
            packets: 3,
            bytes,
            tcp_flags: u32::from(SYN | ACK | FIN),
            ..one(&[])
        },
        "tcp connection",
    )?;
    check(
        &entries,
        &FlowKey::new(lan, IPPROTO_TCP, v4.client, 40001, v4.shared, 443),
        &Want {
            tcp_flags: u32::from(SYN),
            rule: SYS_RECORDS,
            egress: ded,
            ..one(&to_shared)
        },
        "to a shared system",
    )?;
    check(
        &entries,
        &FlowKey::new(
            lan,
            IPPROTO_TCP,
            v4.lan_host,
            40002,
            v4.shared_internet,
            443,
        ),
        &Want {
            tcp_flags: u32::from(SYN),
            reason: Reason::SharedViaInternet,
            rule: SYS_ELSEWHERE,
            egress: inet,
            ..one(&via_inet)
        },
        "shared via internet",
    )?;
    check(
        &entries,
        &FlowKey::new(lan, IPPROTO_TCP, v4.lan_host, 40003, v4.shared, 22),
        &Want {
            tcp_flags: u32::from(SYN),
            reason: Reason::NotAllowed,
            rule: SYS_RECORDS,
            ..one(&not_allowed)
        },
        "not allowed",
    )?;
    check(
        &entries,
        &FlowKey::new(lan, IPPROTO_TCP, v4.client, 40004, v4.blocked_exact, 443),
        &Want {
            tcp_flags: u32::from(SYN),
            reason: Reason::Blocklist,
            rule: CORPUS_FEED,
            ..one(&blocked)
        },
        "blocklist",
    )?;
    check(
        &entries,
        &FlowKey::new(inet, IPPROTO_UDP, v6.blocked_in_net, 53, v6.client, 40005),
        &Want {
            reason: Reason::BlocklistIn,
            rule: CORPUS_FEED,
            ..one(&blocked_in)
        },
        "blocklist_in",
    )?;
    check(
        &entries,
        &FlowKey::new(inet, IPPROTO_UDP, v4.internet, 443, v4.client, 40006),
        &Want {
            egress: lan,
            ..one(&inbound)
        },
        "internet → lan",
    )?;
    let echo_key = FlowKey::new(lan, IPPROTO_ICMPV6, v6.client, 0, v6.internet, 128 << 8);
    check(&entries, &echo_key, &one(&echo), "echo v6")?;
    ensure!(echo_key.family == FAMILY_V6 && echo_key.dport == [128, 0]);
    check(
        &entries,
        &FlowKey::new(ded, IPPROTO_ICMP, v4.shared, 0, v4.client, 8 << 8),
        &Want {
            egress: lan,
            ..one(&echo4)
        },
        "echo v4",
    )?;
    check(
        &entries,
        &FlowKey::new(lan, IPPROTO_UDP, v4.client, 0, v4.internet, 0),
        &one(&frag),
        "later fragment",
    )?;
    ensure!(
        entries.len() == expected_entries,
        "{} flow entries, want {expected_entries} (non-IP, malformed and unknown-port frames have none): {:#?}",
        entries.len(),
        entries.iter().map(|e| e.key).collect::<Vec<_>>()
    );
    let stats = table.stats()?;
    ensure!(
        stats.created == expected_entries as u64 && stats.insert_failed == 0,
        "{stats:?}"
    );

    // The reason, rule and egress follow the last packet: the same flow blocked by a new policy.
    let mut blocking = corpus_image(&a);
    if let IpAddr::V4(x) = v4.internet {
        blocking.block4_exact.insert(x, 0);
    }
    apply(&mut h, blocking, 2)?;
    let f = Frame::ip(v4.client, v4.internet, L4::tcp(40000, 443))
        .tcp(|t| t.flags = ACK)
        .bytes();
    ensure!(run(&h, lan, &f)? == XDP_DROP, "now blocked");
    let v = *find(&table.entries()?, &conn)?;
    ensure!(
        v.packets == 4 && v.reason() == Some(Reason::Blocklist) && v.rule == 0,
        "{v:?}"
    );

    // Exported entries are deleted; keys gone already are skipped, not an error.
    let keys = [conn, echo_key];
    ensure!(table.delete(&keys)? == 2, "deleting two present entries");
    ensure!(table.delete(&keys)? == 0, "deleting them again");
    ensure!(table.entries()?.len() == expected_entries - 2);
    Ok(())
}

fn ipv4(a: IpAddr) -> anyhow::Result<std::net::Ipv4Addr> {
    match a {
        IpAddr::V4(x) => Ok(x),
        IpAddr::V6(x) => bail!("{x} is not IPv4"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?)
}

#[test]
fn drops_are_reported_as_events() -> anyhow::Result<()> {
    let (mut h, a) = harness(LoadOptions::default())?;
    apply(&mut h, corpus_image(&a), 1)?;
    let rt = runtime()?;
    let _guard = rt.enter();
    let mut reader = h.dp.event_reader()?;
    ensure!(
        matches!(h.dp.event_reader(), Err(DataplaneError::EventsTaken)),
        "a second reader"
    );
    let v4 = a.v4.clone();
    let (lan, inet) = (a.lan_if, a.internet_if);

    // The reader waits for an event that a thread in the namespace causes.
    let blocked = Frame::ip(v4.client, v4.blocked_exact, L4::tcp(40010, 443))
        .tcp(|t| t.flags = SYN)
        .bytes();
    let producer = {
        let runner = h.dp.runner(Program::Gateway)?;
        let ns = h.net.name.clone();
        let frame = blocked.clone();
        move || -> anyhow::Result<u32> {
            TestNet::enter_by_name(&ns)?;
            Ok(runner.run(lan, &frame, 1)?.0)
        }
    };
    let (ev, action) = rt.block_on(async {
        let produce = tokio::task::spawn_blocking(producer);
        let ev = reader.next().await;
        (ev, produce.await)
    });
    ensure!(action?? == XDP_DROP, "blocked frame dropped");
    let record = ev?;
    ensure!(record.dns.is_none(), "DNS detail on a blocklist drop");
    let ev = record.event;
    let want = DropEvent {
        ts_ns: ev.ts_ns,
        kind: EVENT_DROP,
        reason: Reason::Blocklist as u8,
        family: FAMILY_V4,
        proto: IPPROTO_TCP,
        ifindex: lan,
        egress_ifindex: 0,
        rule: CORPUS_FEED,
        suppressed: 0,
        bytes: blocked.len() as u32,
        tcp_flags: SYN,
        role: Role::Lan as u8,
        _pad: [0; 2],
        sport: 40010u16.to_be_bytes(),
        dport: 443u16.to_be_bytes(),
        src: FlowKey::new(0, 0, v4.client, 0, v4.blocked_exact, 0).src,
        dst: FlowKey::new(0, 0, v4.client, 0, v4.blocked_exact, 0).dst,
    };
    ensure!(ev == want, "event {ev:#?}\nwant {want:#?}");
    ensure!(ev.ts_ns > 0 && ev.src_addr() == Some(v4.client) && ev.dport() == 443);

    // A drop after a route lookup names the egress port.
    let cross = Frame::ip(v4.internet, v4.dedicated_host, L4::udp(53, 40011)).bytes();
    ensure!(run(&h, inet, &cross)? == XDP_DROP, "internet → dedicated");
    let ev = reader.try_next().context("cross_network event")?.event;
    ensure!(
        ev.reason() == Some(Reason::CrossNetwork)
            && ev.egress_ifindex == a.dedicated_if
            && ev.role() == Some(Role::Internet)
            && ev.rule == NO_RULE,
        "{ev:#?}"
    );

    // Malformed: no addresses to report.
    let truncated = Frame::ip(v4.client, v4.internet, L4::tcp(40012, 443))
        .truncate(30)
        .bytes();
    ensure!(run(&h, lan, &truncated)? == XDP_DROP, "truncated");
    let ev = reader.try_next().context("malformed event")?.event;
    ensure!(
        ev.reason() == Some(Reason::Malformed)
            && ev.family == 0
            && ev.src == [0; 16]
            && ev.rule == NO_RULE
            && ev.bytes == 30,
        "{ev:#?}"
    );

    // Passes send nothing.
    let pass = Frame::ip(v4.client, v4.internet, L4::tcp(40013, 443)).bytes();
    ensure!(run(&h, lan, &pass)? == XDP_PASS);
    ensure!(reader.try_next().is_none(), "an event for a pass");
    let stats = reader.stats()?;
    ensure!(
        stats.emitted == 3 && stats.suppressed == 0 && stats.lost == 0,
        "{stats:?}"
    );
    ensure!(h.dp.event_stats()? == stats);
    Ok(())
}

#[test]
fn drop_events_are_rate_limited_per_source() -> anyhow::Result<()> {
    let (mut h, a) = harness(LoadOptions::default())?;
    // Five events per source and reason per hour: nothing in this test waits that long.
    let limited = |window_ms| MapImage {
        alert_limit: AlertLimit {
            burst: 5,
            window_ms,
        },
        ..corpus_image(&a)
    };
    apply(&mut h, limited(3_600_000), 1)?;
    let rt = runtime()?;
    let _guard = rt.enter();
    let mut reader = h.dp.event_reader()?;
    let v4 = &a.v4;

    for sport in 0..100u16 {
        let f = Frame::ip(v4.client, v4.blocked_exact, L4::tcp(30000 + sport, 443)).bytes();
        ensure!(run(&h, a.lan_if, &f)? == XDP_DROP);
    }
    let mut events = Vec::new();
    reader.drain(&mut events, 1000);
    let carried: u64 = events.iter().map(|e| u64::from(e.event.suppressed)).sum();
    let stats = reader.stats()?;
    ensure!(
        events.len() == 5 && stats.emitted == 5,
        "{} events, {stats:?}",
        events.len()
    );
    ensure!(
        carried + stats.suppressed == 95 && carried == 0,
        "suppressed: {carried} carried by events, {} counted",
        stats.suppressed
    );
    // The events are the first five drops.
    let ports: Vec<u16> = events.iter().map(|e| e.event.sport()).collect();
    ensure!(ports == [30000, 30001, 30002, 30003, 30004], "{ports:?}");

    // Another source has a burst of its own; another reason of the same source too.
    let other = Frame::ip(v4.lan_host, v4.blocked_exact, L4::tcp(30500, 443)).bytes();
    ensure!(run(&h, a.lan_if, &other)? == XDP_DROP);
    let not_allowed = Frame::ip(v4.client, v4.shared, L4::tcp(30501, 22)).bytes();
    ensure!(run(&h, a.lan_if, &not_allowed)? == XDP_DROP);
    reader.drain(&mut events, 1000);
    ensure!(events.len() == 7, "{} events", events.len());

    // A new window (window 0 = every drop starts one): the next event of the first source carries
    // the 95 suppressed since its last one.
    apply(&mut h, limited(0), 2)?;
    let f = Frame::ip(v4.client, v4.blocked_exact, L4::tcp(31000, 443)).bytes();
    ensure!(run(&h, a.lan_if, &f)? == XDP_DROP);
    let ev = reader.try_next().context("event of the new window")?.event;
    ensure!(
        ev.suppressed == 95 && ev.sport() == 31000,
        "suppressed {} on {:?}",
        ev.suppressed,
        ev.sport()
    );
    ensure!(reader.stats()?.suppressed == 95);

    // Burst 0: no events at all, every drop counted as suppressed.
    apply(
        &mut h,
        MapImage {
            alert_limit: AlertLimit {
                burst: 0,
                window_ms: 1000,
            },
            ..corpus_image(&a)
        },
        3,
    )?;
    ensure!(run(&h, a.lan_if, &f)? == XDP_DROP);
    ensure!(reader.try_next().is_none(), "an event with burst 0");
    ensure!(reader.stats()?.suppressed == 96);
    Ok(())
}

#[test]
fn a_full_ring_buffer_counts_lost_events() -> anyhow::Result<()> {
    let (mut h, a) = harness(LoadOptions::default())?;
    // No rate limit: every drop is offered to the ring buffer, which nobody reads meanwhile.
    let unlimited = MapImage {
        alert_limit: AlertLimit {
            burst: u32::MAX,
            window_ms: 0,
        },
        ..corpus_image(&a)
    };
    apply(&mut h, unlimited, 1)?;
    let rt = runtime()?;
    let _guard = rt.enter();
    let mut reader = h.dp.event_reader()?;
    let f = Frame::ip(a.v4.client, a.v4.blocked_exact, L4::tcp(40030, 443)).bytes();
    const DROPS: u32 = 20_000;
    ensure!(h.runner.run(a.lan_if, &f, DROPS)?.0 == XDP_DROP);
    let stats = reader.stats()?;
    // 1 MiB holds 13,107 events of 72 bytes plus an 8-byte header.
    let room = (1u64 << 20) / 80;
    ensure!(
        stats.emitted + stats.lost == u64::from(DROPS)
            && stats.emitted <= room
            && stats.lost > 0
            && stats.suppressed == 0,
        "{stats:?}"
    );
    let mut events = Vec::new();
    reader.drain(&mut events, usize::MAX);
    ensure!(
        events.len() as u64 == stats.emitted,
        "{} events read, {} emitted",
        events.len(),
        stats.emitted
    );
    // Room again: the next drop is reported.
    ensure!(run(&h, a.lan_if, &f)? == XDP_DROP);
    ensure!(reader.try_next().is_some(), "no event after draining");
    Ok(())
}

#[test]
fn a_small_flow_table_evicts_and_counts_what_it_created() -> anyhow::Result<()> {
    let (mut h, a) = harness(LoadOptions { flow_entries: 1024 })?;
    apply(&mut h, corpus_image(&a), 1)?;
    let table = h.dp.flow_table()?;
    ensure!(table.capacity() == 1024, "capacity {}", table.capacity());
    for i in 0..5000u32 {
        let sport = 10000 + (i % 50000) as u16;
        let f = Frame::ip(a.v4.client, a.v4.internet, L4::udp(sport, 53)).bytes();
        ensure!(h.runner.run(a.lan_if, &f, 1)?.0 == XDP_PASS);
    }
    let stats = table.stats()?;
    let present = table.entries()?.len() as u64;
    ensure!(
        stats.created == 5000 && stats.insert_failed == 0,
        "{stats:?}"
    );
    ensure!(
        present <= 1024 && present > 0,
        "{present} entries in a table of 1024"
    );
    println!(
        "1024-entry flow table after 5000 flows: {present} present, {} evicted",
        stats.created - present
    );
    // Sizes outside the profile's bounds are refused before anything is loaded.
    ensure!(matches!(
        Dataplane::load_with(
            Persistence::Ephemeral,
            DatapathConfig::DEFAULT,
            LoadOptions { flow_entries: 10 }
        ),
        Err(DataplaneError::FlowEntries(10))
    ));
    Ok(())
}

/// A private bpffs, unmounted and removed on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount() -> anyhow::Result<Bpffs> {
        require_root("mounting a bpffs")?;
        let dir = std::env::temp_dir().join(format!("gw-flow-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let fs = Bpffs(dir);
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&fs.0)
            .status()?
            .success();
        ensure!(ok, "mount -t bpf bpf {} failed", fs.0.display());
        Ok(fs)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pinned(dir: &Path, flow_entries: u32) -> Result<Dataplane, DataplaneError> {
    Dataplane::load_with(
        Persistence::Pinned(dir.to_owned()),
        DatapathConfig::DEFAULT,
        LoadOptions { flow_entries },
    )
}

/// A restart with the same profile adopts the pinned flow table (entries survive); one whose
/// profile changed `flow_entries` gets a fresh table of the new size, and the policy maps are kept.
/// A pinned policy map of another layout is refused, naming the way out.
#[test]
fn pinned_flow_table_follows_the_profile_size() -> anyhow::Result<()> {
    let (h, a) = harness(LoadOptions::default())?;
    let fs = Bpffs::mount()?;
    let dir = fs.path().join("gw");
    let bindings: Vec<_> = h.net.ports.iter().map(|(r, _, i)| (*i, *r)).collect();
    let flow = Frame::ip(a.v4.client, a.v4.internet, L4::tcp(40020, 443)).bytes();

    let mut dp = pinned(&dir, 2048)?;
    ensure!(dp.fresh() && dp.replaced_pins().is_empty());
    dp.bind_ports(&bindings)?;
    dp.apply(Arc::new(corpus_image(&a)), 1)?;
    ensure!(dp.runner(Program::Gateway)?.run(a.lan_if, &flow, 1)?.0 == XDP_PASS);
    ensure!(dp.flow_table()?.entries()?.len() == 1);
    drop(dp);

    let dp = pinned(&dir, 2048)?;
    ensure!(!dp.fresh() && dp.active()?.generation == 1);
    ensure!(
        dp.replaced_pins().is_empty(),
        "a restart with the same profile replaced {:?}",
        dp.replaced_pins()
    );
    let t = dp.flow_table()?;
    ensure!(t.capacity() == 2048 && t.entries()?.len() == 1, "adopted");
    drop((t, dp));

    let dp = pinned(&dir, 4096)?;
    ensure!(dp.replaced_pins() == ["FLOWS"], "{:?}", dp.replaced_pins());
    let t = dp.flow_table()?;
    ensure!(
        t.capacity() == 4096 && t.entries()?.is_empty(),
        "re-created at the new size"
    );
    ensure!(
        dp.active()?.generation == 1,
        "the policy in force survives a flow table resize"
    );
    drop((t, dp));

    // A SETTINGS map of the previous layout (48-byte values) is refused before anything loads.
    let other = fs.path().join("old");
    std::fs::create_dir_all(other.join("maps"))?;
    let settings = other.join("maps/SETTINGS");
    let made = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&settings)
        .args([
            "type", "array", "key", "4", "value", "48", "entries", "2", "name", "SETTINGS",
        ])
        .status()
        .context("bpftool (apt-get install bpftool)")?
        .success();
    ensure!(made, "bpftool map create failed");
    match Dataplane::load(Persistence::Pinned(other.clone()), DatapathConfig::DEFAULT) {
        Err(
            e @ DataplaneError::IncompatiblePin {
                map: "SETTINGS", ..
            },
        ) => {
            let msg = e.to_string();
            ensure!(msg.contains("--teardown"), "{msg}");
        }
        Err(e) => bail!("expected IncompatiblePin, got {e}"),
        Ok(_) => bail!("a SETTINGS map of the old layout was adopted"),
    }
    Ok(())
}
