//! R8 / atomic apply with real traffic: while paced UDP floods (IPv4 and IPv6) run from the office
//! towards a blocklisted host and towards an allowed one, two different valid policies (both blocking
//! the host) are applied alternately, many times. Not one packet may reach the blocklisted host, and
//! the allowed streams must keep flowing after every apply. Needs root and gatewayd.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Side::{Client, Inet};
use gateway_tests::lab::servers::UDP_SINK_PORT as SINK;
use gateway_tests::lab::{ALT_POLICY, EXAMPLE_POLICY, Lab, Proto, addr::*};

const APPLIES: usize = 24;
const RATE_PER_TARGET: u32 = 1000;
/// The floods stop by themselves after this long, whatever happens to the test.
const FLOOD_LIMIT: Duration = Duration::from_secs(180);

/// Datagrams the Internet side's servers received on `to`.
fn received(lab: &Lab, to: SocketAddr) -> Result<u64> {
    lab.served(&[Inet], |h| h.proto == Proto::Udp && h.local == to)
}

/// Waits (at most 2 s) until more than `seen` datagrams arrived on every one of `to`.
fn wait_for_more(lab: &Lab, to: &[SocketAddr], seen: &[u64]) -> Result<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = to
            .iter()
            .map(|t| received(lab, *t))
            .collect::<Result<Vec<u64>>>()?;
        if now.iter().zip(seen).all(|(n, s)| n > s) {
            return Ok(now);
        }
        if Instant::now() > deadline {
            bail!("no new datagram within 2 s on some of {to:?}: {seen:?} -> {now:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn applying_policies_under_load_never_lets_a_blocked_packet_through() -> Result<()> {
    let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?;
    let blocked = [
        SocketAddr::new(BLOCKED_V4.into(), SINK),
        SocketAddr::new(BLOCKED_V6.into(), SINK),
    ];
    let allowed = [
        SocketAddr::new(INET_SERVER_V4.into(), SINK),
        SocketAddr::new(INET_SERVER_V6.into(), SINK),
    ];
    let blocked_hosts = [IpAddr::from(BLOCKED_V4), BLOCKED_V6.into()];
    let reached_blocked = |lab: &Lab| lab.arrived(&[Inet], |k| blocked_hosts.contains(&k.dst));
    let blocklist_before = lab.counter(Role::Lan, Reason::Blocklist)?;
    let no_policy_before = lab.counter(Role::Lan, Reason::NoPolicy)?;

    let rate = RATE_PER_TARGET;
    let flood4 = lab.udp_flood(
        Client,
        CLIENT_V4,
        vec![blocked[0], allowed[0]],
        rate,
        FLOOD_LIMIT,
    )?;
    let flood6 = lab.udp_flood(
        Client,
        CLIENT_V6,
        vec![blocked[1], allowed[1]],
        rate,
        FLOOD_LIMIT,
    )?;
    let mut seen = wait_for_more(&lab, &allowed, &[0, 0])?;

    let mut apply_times = Vec::new();
    for i in 1..=APPLIES {
        let policy = if i % 2 == 1 {
            ALT_POLICY
        } else {
            EXAMPLE_POLICY
        };
        let started = Instant::now();
        let out = lab.apply(policy)?;
        apply_times.push(started.elapsed().as_millis());
        ensure!(out.success(), "apply #{i} of {policy} failed: {out}");
        let leaked = reached_blocked(&lab)?;
        ensure!(
            leaked == 0,
            "after apply #{i} of {policy}: {leaked} packet(s) reached a blocklisted host"
        );
        seen = wait_for_more(&lab, &allowed, &seen).map_err(|e| {
            e.context(format!(
                "the allowed streams stopped after apply #{i} of {policy}"
            ))
        })?;
    }
    let (report4, report6) = (flood4.stop()?, flood6.stop()?);

    let sent_blocked = report4.sent_to(blocked[0]) + report6.sent_to(blocked[1]);
    let sent_allowed = report4.sent_to(allowed[0]) + report6.sent_to(allowed[1]);
    let got_allowed = received(&lab, allowed[0])? + received(&lab, allowed[1])?;
    let got_blocked = received(&lab, blocked[0])? + received(&lab, blocked[1])?;
    let tap_blocked = reached_blocked(&lab)?;
    let tap_drops = lab.tap_kernel_drops()?;
    let counted_blocklist = lab.counter(Role::Lan, Reason::Blocklist)? - blocklist_before;
    let counted_no_policy = lab.counter(Role::Lan, Reason::NoPolicy)? - no_policy_before;
    let loss = 1.0 - got_allowed as f64 / sent_allowed.max(1) as f64;
    println!(
        "{APPLIES} applies in {:.1} s (ms each: {apply_times:?}); sent {sent_allowed} allowed and \
         {sent_blocked} blocked datagrams ({} send errors); allowed received {got_allowed} \
         (loss {:.2} %); lan/blocklist +{counted_blocklist}, lan/no_policy +{counted_no_policy}; \
         tap kernel drops {tap_drops}",
        report4.elapsed.as_secs_f64(),
        report4.send_errors + report6.send_errors,
        loss * 100.0,
    );
    ensure!(
        tap_drops == 0,
        "the taps lost {tap_drops} packet(s): a count of zero would prove nothing"
    );
    ensure!(
        got_blocked == 0 && tap_blocked == 0,
        "the blocklisted hosts received {got_blocked} datagram(s); their tap saw {tap_blocked} packet(s)"
    );
    ensure!(
        sent_blocked > 0 && got_allowed > 0,
        "the floods did not run"
    );
    Ok(())
}
