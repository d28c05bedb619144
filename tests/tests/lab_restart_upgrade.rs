//! Issue 4, item 6 with real traffic and gatewayd --nftables: floods of forbidden traffic (the
//! blocklisted host from the lan, internet -> dedicated, lan -> shared system by the internet
//! uplink) and an allowed stream run while gatewayd (a) stops cleanly (SIGTERM) and starts again and
//! (b) is killed (SIGKILL) and starts again. Every start loads the data-path program afresh and
//! replaces it on the pinned link — the path an upgraded binary takes — so each start must keep
//! every port's link id and change its program id. Zero forbidden packets may reach their
//! destinations (counted at the receivers' taps); the allowed stream's loss is reported.
//!
//! Needs root (namespaces, XDP, nftables) and bpftool.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Side::{Client, Ded, Inet};
use gateway_tests::lab::addr::*;
use gateway_tests::lab::servers::UDP_SINK_PORT;
use gateway_tests::lab::{EXAMPLE_POLICY, Findings, Lab, Proto};

const PORTS: [&str; 3] = ["lan0", "ded0", "inet0"];

/// (link id, program id) of each port's pinned XDP link, per bpftool.
fn links(lab: &Lab) -> Result<Vec<(u64, u64)>> {
    PORTS
        .iter()
        .map(|port| {
            let pin = lab.pin_dir().join("links").join(port);
            let out = Command::new("bpftool")
                .args(["-j", "link", "show", "pinned"])
                .arg(&pin)
                .output()
                .context("running bpftool (apt-get install bpftool)")?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "bpftool link show pinned {}: {}",
                    pin.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            Ok((
                v["id"].as_u64().context("link id")?,
                v["prog_id"].as_u64().context("prog_id")?,
            ))
        })
        .collect()
}

#[test]
fn restart_and_upgrade_under_traffic_leak_no_forbidden_packet() -> Result<()> {
    let mut lab = Lab::up()?;
    lab.start_gatewayd_with(EXAMPLE_POLICY, &["--nftables".into()])?;
    // lan -> shared system by the internet uplink: the gateway's routes send it there.
    lab.divert_shared_routes_to_internet()?;
    let blocklist_before = lab.counter(Role::Lan, Reason::Blocklist)?;
    let via_inet_before = lab.counter(Role::Lan, Reason::SharedViaInternet)?;

    let limit = Duration::from_secs(120);
    let blocked = SocketAddr::new(BLOCKED_V4.into(), UDP_SINK_PORT);
    let allowed = SocketAddr::new(INET_SERVER_V4.into(), UDP_SINK_PORT);
    let to_dedicated = SocketAddr::new(SHARED_DOCS_V4.into(), UDP_SINK_PORT);
    let lan = lab.udp_flood(Client, CLIENT_V4, vec![blocked, allowed], 200, limit)?;
    // Pings are what the policy allows to the shared system (so only the uplink makes them wrong):
    // by the internet uplink, they are shared_via_internet.
    let pings = lab.ping_flood(
        Client,
        CLIENT_V4,
        SHARED_NPDB_V4,
        Duration::from_millis(5),
        limit,
    )?;
    let inet = lab.udp_flood(Inet, INET_SERVER_V4, vec![to_dedicated], 200, limit)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));

    let mut findings = Findings::default();
    let mut gaps = Vec::new();
    let before = links(&lab)?;
    for (what, signal) in [
        ("SIGTERM + start", libc::SIGTERM),
        ("SIGKILL + start", libc::SIGKILL),
    ] {
        let old = links(&lab)?;
        let t = Instant::now();
        lab.kill_gatewayd(signal)?;
        lab.restart_gatewayd()?;
        gaps.push((what, t.elapsed()));
        let new = links(&lab)?;
        for ((port, (old_link, old_prog)), (new_link, new_prog)) in PORTS.iter().zip(&old).zip(&new)
        {
            findings.check(old_link == new_link, || {
                format!("{what}: {port}'s link id changed {old_link} -> {new_link} (a detach/attach, not a replace)")
            });
            findings.check(old_prog != new_prog, || {
                format!(
                    "{what}: {port} still runs program {old_prog}: the program was not replaced"
                )
            });
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let sent_lan = lan.stop()?;
    let sent_inet = inet.stop()?;
    let sent_pings = pings.stop()?;
    let ran = started.elapsed();
    lab.restore_shared_routes()?;

    let tap_drops = lab.tap_kernel_drops()?;
    findings.check(tap_drops == 0, || {
        format!("the taps lost {tap_drops} packet(s): a zero proves nothing")
    });
    let reached_blocked = lab.arrived(&[Inet, Ded], |k| k.dst == IpAddr::from(BLOCKED_V4))?;
    let reached_shared = lab.arrived(&[Inet, Ded], |k| k.dst == IpAddr::from(SHARED_NPDB_V4))?;
    let reached_dedicated = lab.arrived(&[Ded], |k| {
        k.dst == IpAddr::from(SHARED_DOCS_V4) && k.src == IpAddr::from(INET_SERVER_V4)
    })?;
    for (what, n, sent) in [
        (
            "blocklisted host",
            reached_blocked,
            sent_lan.sent_to(blocked),
        ),
        (
            "shared system by the internet uplink",
            reached_shared,
            sent_pings,
        ),
        (
            "dedicated network from the internet",
            reached_dedicated,
            sent_inet.sent_to(to_dedicated),
        ),
    ] {
        findings.check(n == 0 && sent > 0, || {
            format!("{what}: {n} of {sent} forbidden datagrams arrived")
        });
    }
    // The kernel judged them for the right reason, also while no gatewayd ran (pinned counters).
    let blocklisted = lab.counter(Role::Lan, Reason::Blocklist)? - blocklist_before;
    let via_inet = lab.counter(Role::Lan, Reason::SharedViaInternet)? - via_inet_before;
    findings.check(blocklisted >= sent_lan.sent_to(blocked), || {
        format!(
            "lan/blocklist grew by {blocklisted} for {} datagrams",
            sent_lan.sent_to(blocked)
        )
    });
    findings.check(via_inet >= sent_pings, || {
        format!("lan/shared_via_internet grew by {via_inet} for {sent_pings} pings")
    });
    let allowed_sent = sent_lan.sent_to(allowed);
    let allowed_received = lab.served(&[Inet], |h| h.proto == Proto::Udp && h.local == allowed)?;
    findings.check(allowed_received > 0, || {
        "the allowed stream did not flow across the restarts".into()
    });
    let after = links(&lab)?;
    let loss = allowed_sent.saturating_sub(allowed_received);
    println!(
        "{:.1} s of traffic, restarts: {}; forbidden sent: blocklisted {}, shared-via-internet {} (pings), \
         internet->dedicated {} — arrived 0/0/0 expected, got {reached_blocked}/{reached_shared}/{reached_dedicated}; \
         allowed {allowed_sent} sent, {allowed_received} received ({loss} lost, {:.3} %); \
         link ids {:?} (unchanged), program ids {:?} -> {:?}",
        ran.as_secs_f64(),
        gaps.iter()
            .map(|(w, d)| format!("{w} {:.0} ms", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", "),
        sent_lan.sent_to(blocked),
        sent_pings,
        sent_inet.sent_to(to_dedicated),
        if allowed_sent == 0 {
            0.0
        } else {
            loss as f64 * 100.0 / allowed_sent as f64
        },
        before.iter().map(|l| l.0).collect::<Vec<_>>(),
        before.iter().map(|l| l.1).collect::<Vec<_>>(),
        after.iter().map(|l| l.1).collect::<Vec<_>>(),
    );
    if let Err(e) = findings.finish() {
        bail!("{e:#}\ngatewayd log:\n{}", lab.gatewayd_log());
    }
    lab.teardown()
}
