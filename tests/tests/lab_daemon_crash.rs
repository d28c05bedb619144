//! Crash safety with real traffic: after `kill -9` of gatewayd the data path keeps enforcing the
//! policy (blocked stays blocked, the shared system stays reachable, the kernel keeps counting), a
//! new gatewayd adopts the pinned state (same image hash, generation not reset), and a ping flood
//! running across the crash and the restart never reaches the blocklisted host. Needs root and
//! gatewayd.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{Result, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Probe::{Ping, Tcp};
use gateway_tests::lab::Side::{Client, Inet};
use gateway_tests::lab::cases::{DELIVERED, case, dropped};
use gateway_tests::lab::servers::UDP_SINK_PORT;
use gateway_tests::lab::{ALT_POLICY, EXAMPLE_POLICY, Expect, Findings, Lab, Proto, addr::*};

#[test]
fn kill_9_keeps_enforcement_and_a_restart_adopts_the_pinned_state() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    // A few generations first, so "not reset to a fresh slot" is visible.
    for policy in [ALT_POLICY, EXAMPLE_POLICY] {
        let out = lab.apply(policy)?;
        ensure!(out.success(), "apply {policy}: {out}");
    }
    let before = lab.status()?;
    let blocklist_before = lab.counter(Role::Lan, Reason::Blocklist)?;

    // Both floods run across the crash and the restart; both stop by themselves after a minute.
    let limit = Duration::from_secs(60);
    let pings = lab.ping_flood(
        Client,
        CLIENT_V4,
        BLOCKED_V4,
        Duration::from_millis(5),
        limit,
    )?;
    let allowed = SocketAddr::new(INET_SERVER_V4.into(), UDP_SINK_PORT);
    let blocked = SocketAddr::new(BLOCKED_V4.into(), UDP_SINK_PORT);
    let datagrams = lab.udp_flood(Client, CLIENT_V4, vec![blocked, allowed], 200, limit)?;

    let status = lab.kill_gatewayd(libc::SIGKILL)?;
    ensure!(
        status.signal() == Some(libc::SIGKILL),
        "gatewayd did not die of SIGKILL: {status}"
    );

    let mut findings = Findings::default();
    // No daemon: probes are judged by what arrived and what answered (no counters to read).
    let to_blocked = lab.observe(Client, CLIENT_V4.into(), BLOCKED_V4.into(), Ping)?;
    findings.check(!to_blocked.answered && to_blocked.arrived == 0, || {
        format!("with gatewayd dead, the blocklisted host is reachable: {to_blocked}")
    });
    for (src, dst) in [
        (IpAddr::from(CLIENT_V4), IpAddr::from(SHARED_NPDB_V4)),
        (CLIENT_V6.into(), SHARED_NPDB_V6.into()),
    ] {
        let delivered = lab.expect(Client, src, dst, Tcp(443), Expect::Delivered);
        findings.record(delivered.map_err(|e| e.context("with gatewayd dead")));
    }

    lab.restart_gatewayd()?;
    let after = lab.status()?;
    let sent_pings = pings.stop()?;
    let flood = datagrams.stop()?;

    findings.check(after.image_hash == before.image_hash, || {
        format!(
            "image hash changed across the restart: {} -> {}",
            before.image_hash, after.image_hash
        )
    });
    findings.check(after.generation >= before.generation, || {
        format!(
            "generation went back from {} to {}: a fresh slot instead of the pinned one",
            before.generation, after.generation
        )
    });

    let reached = lab.arrived(&[Inet], |k| k.dst == IpAddr::from(BLOCKED_V4))?;
    let tap_drops = lab.tap_kernel_drops()?;
    findings.check(tap_drops == 0, || {
        format!("the taps lost {tap_drops} packet(s): a zero proves nothing")
    });
    findings.check(reached == 0, || {
        format!("{reached} packet(s) reached the blocklisted host across the crash and restart")
    });
    let allowed_received = lab.served(&[Inet], |h| h.proto == Proto::Udp && h.local == allowed)?;
    findings.check(allowed_received > 0, || {
        "the allowed stream did not flow across the crash".into()
    });

    // The kernel counted every blocked packet, also while no daemon ran (the counters are pinned).
    let counted = lab
        .counter(Role::Lan, Reason::Blocklist)?
        .saturating_sub(blocklist_before);
    let sent_blocked = sent_pings + flood.sent_to(blocked) + 1;
    findings.check(counted >= sent_blocked, || {
        format!("lan/blocklist grew by {counted}, but {sent_blocked} blocked packets were sent")
    });
    println!(
        "generation {} -> {}, hash {}; {sent_pings} pings + {} datagrams to the blocklisted host, \
         lan/blocklist +{counted}; allowed datagrams {} sent, {allowed_received} received",
        before.generation,
        after.generation,
        after.image_hash,
        flood.sent_to(blocked),
        flood.sent_to(allowed)
    );

    // And the restarted daemon still sees and counts.
    let blocklist = dropped(Role::Lan, Reason::Blocklist);
    findings.record(lab.check_cases(&[
        case(Client, CLIENT_V4, BLOCKED_V4, Ping, blocklist).with_note("after restart"),
        case(Client, CLIENT_V4, SHARED_NPDB_V4, Tcp(443), DELIVERED).with_note("after restart"),
    ]));
    findings.finish()
}
