//! R3/R5/R9 end to end with the SOC's own tools: real traffic through the lab gateway, and what
//! `nfcapd`/`nfdump` (IPFIX and NetFlow v9), `rsyslogd` and `promtool` get from it. The SOC sits on
//! the dedicated network, where configs/ward-office.toml sends everything. Needs root.
//!
//! The policy is the example one with a 2 s idle timeout, so flows are reported seconds after the
//! traffic stops.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use gateway_tests::lab::servers::UDP_SINK_PORT;
use gateway_tests::lab::soc::{Collector, NfFlow, Soc};
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, Side, addr::*, daemon::workspace_root};

/// The example policy with short flow timeouts, written beside a link to its feeds.
fn soc_policy(dir: &Path) -> Result<std::path::PathBuf> {
    let example = workspace_root().join(EXAMPLE_POLICY);
    let text = std::fs::read_to_string(&example)?;
    let short = text.replace("idle_timeout_secs = 15", "idle_timeout_secs = 2");
    ensure!(
        short != text,
        "the example policy no longer sets idle_timeout_secs = 15"
    );
    let policy = dir.join("ward-office-soc.toml");
    std::fs::write(&policy, short)?;
    let feeds = dir.join("feeds");
    if !feeds.exists() {
        std::os::unix::fs::symlink(
            example.parent().context("example dir")?.join("feeds"),
            &feeds,
        )?;
    }
    Ok(policy)
}

/// Bytes of the flood's datagrams as XDP counts them (Ethernet + IPv4 + UDP + "gwlab flood N").
fn flood_bytes(datagrams: u64) -> u64 {
    (0..datagrams)
        .map(|round| 14 + 20 + 8 + "gwlab flood ".len() as u64 + round.to_string().len() as u64)
        .sum()
}

fn flows_between(
    flows: &[NfFlow],
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
) -> (u64, u64, Vec<&NfFlow>) {
    let matching: Vec<&NfFlow> = flows
        .iter()
        .filter(|f| {
            f.src == src.to_string()
                && f.dst == dst.to_string()
                && f.proto == 17
                && f.dport == u64::from(dport)
        })
        .collect();
    let packets = matching.iter().map(|f| f.packets).sum();
    let bytes = matching.iter().map(|f| f.bytes).sum();
    (packets, bytes, matching)
}

/// The value of one series in a Prometheus exposition (labels as written, in order).
fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sum of every series of a family whose labels contain all of `must`.
fn metric_sum(exposition: &str, family: &str, must: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter(|l| must.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_soc_sees_every_flow_and_every_blocked_attempt() -> Result<()> {
    let mut lab = Lab::up()?;
    let policy = soc_policy(&lab.run_dir())?;
    lab.start_soc()?;
    lab.start_gatewayd(&policy)?;

    // Known traffic: one flow passed to the Internet server, one dropped at the blocklisted host.
    let passed = SocketAddr::new(INET_SERVER_V4.into(), UDP_SINK_PORT);
    let blocked = SocketAddr::new(BLOCKED_V4.into(), UDP_SINK_PORT);
    let flood = lab.udp_flood(
        Side::Client,
        CLIENT_V4,
        vec![passed, blocked],
        100,
        Duration::from_secs(1),
    )?;
    std::thread::sleep(Duration::from_millis(1200));
    let report = flood.stop()?;
    ensure!(
        report.send_errors == 0,
        "the flood had send errors: {report:?}"
    );
    let (n_pass, n_drop) = (report.sent_to(passed), report.sent_to(blocked));
    ensure!(n_pass > 50 && n_drop > 50, "flood too small: {report:?}");

    // Idle timeout 2 s, sweeps every second: the flows are reported a few seconds later.
    std::thread::sleep(Duration::from_secs(6));
    let soc: &mut Soc = lab.soc().context("SOC not started")?;
    let exposition = soc.scrape()?;
    Soc::promtool_check(&exposition)?;
    for collector in ["soc-ipfix", "soc-netflow9"] {
        let sent = metric_sum(
            &exposition,
            "gateway_flow_collector_records_total",
            &[&format!("collector=\"{collector}\"")],
        );
        ensure!(
            sent >= 2.0,
            "{collector}: {sent} records sent so far\n{exposition}"
        );
        let lost = metric_sum(
            &exposition,
            "gateway_flow_collector_lost_records_total",
            &[&format!("collector=\"{collector}\"")],
        );
        ensure!(lost == 0.0, "{collector}: {lost} records lost");
    }

    for collector in [Collector::Ipfix, Collector::Netflow9] {
        let flows = soc.flows(collector)?;
        let (p, b, _) = flows_between(
            &flows,
            CLIENT_V4.into(),
            INET_SERVER_V4.into(),
            UDP_SINK_PORT,
        );
        ensure!(
            (p, b) == (n_pass, flood_bytes(n_pass)),
            "{collector:?}: passed flow has {p} packets / {b} bytes, sent {n_pass} / {}; nfdump shows:\n{flows:#?}",
            flood_bytes(n_pass)
        );
        let (p, b, records) =
            flows_between(&flows, CLIENT_V4.into(), BLOCKED_V4.into(), UDP_SINK_PORT);
        ensure!(
            (p, b) == (n_drop, flood_bytes(n_drop)),
            "{collector:?}: denied flow has {p} packets / {b} bytes, sent {n_drop} / {}",
            flood_bytes(n_drop)
        );
        if collector == Collector::Netflow9 {
            // nfdump reads forwardingStatus and the firewall event from NetFlow v9 (not from IPFIX,
            // whose encoding gateway/flows checks with tshark).
            ensure!(
                records
                    .iter()
                    .all(|f| f.dropped() && f.event.as_deref() == Some("DENIED")),
                "denied flow not marked dropped/DENIED: {records:#?}"
            );
            let (_, _, passed_records) = flows_between(
                &flows,
                CLIENT_V4.into(),
                INET_SERVER_V4.into(),
                UDP_SINK_PORT,
            );
            ensure!(
                passed_records.iter().all(|f| f.fwd_status >> 6 == 1),
                "passed flow not forwarded: {passed_records:#?}"
            );
        }
    }

    // The syslog receiver has the blocked attempts, with reason, rule, addresses and Community ID.
    let is_ours = |a: &serde_json::Value| {
        let sd = &a["rfc5424-sd"]["gateway@32473"];
        a["msgid"] == "blocklist"
            && sd["src"] == CLIENT_V4.to_string()
            && sd["dst"] == BLOCKED_V4.to_string()
    };
    let alerts = soc.wait_alerts(Duration::from_secs(30), |all| all.iter().any(is_ours))?;
    let ours: Vec<&serde_json::Value> = alerts.iter().filter(|a| is_ours(a)).collect();
    let sd = &ours[0]["rfc5424-sd"]["gateway@32473"];
    ensure!(sd["rule"] == "feed:policy", "rule: {sd}");
    ensure!(sd["ingress"] == "lan0", "ingress: {sd}");
    ensure!(
        sd["community_id"]
            .as_str()
            .is_some_and(|c| c.starts_with("1:")),
        "community id: {sd}"
    );
    let reported: u64 = ours
        .iter()
        .map(|a| {
            1 + a["rfc5424-sd"]["gateway@32473"]["suppressed"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    ensure!(
        reported <= n_drop && (ours.len() as u64) < n_drop,
        "{} alerts standing for {reported} drops, of {n_drop}: the rate limit did not fold the flood",
        ours.len()
    );

    // Nothing silently lost: every drop is an event sent, suppressed (summarised) or lost (counted).
    let exposition = soc.scrape()?;
    let drops = metric_sum(&exposition, "gateway_packets_total", &["verdict=\"drop\""]);
    let accounted = [
        "gateway_alert_events_total",
        "gateway_alert_events_suppressed_total",
        "gateway_alert_events_lost_total",
    ]
    .iter()
    .map(|f| metric(&exposition, f).unwrap_or(f64::NAN))
    .sum::<f64>();
    ensure!(drops >= n_drop as f64, "drop counters {drops} < {n_drop}");
    ensure!(
        drops == accounted,
        "{drops} drops but {accounted} events sent + suppressed + lost"
    );
    ensure!(
        metric_sum(
            &exposition,
            "gateway_alert_sink_sent_total",
            &["sink=\"soc-siem\""]
        ) >= 1.0,
        "no alert counted as sent to soc-siem"
    );
    ensure!(
        metric(&exposition, "gateway_policy_loaded") == Some(1.0),
        "policy not loaded?"
    );

    eprintln!(
        "soc view: {n_pass} passed, {n_drop} dropped; {} alerts for them; drops {drops} = accounted {accounted}",
        ours.len()
    );
    // The local alert log holds them too.
    let log = std::fs::read_to_string(lab.run_dir().join("state/alerts.jsonl"))?;
    ensure!(
        log.lines()
            .any(|l| l.contains("\"reason\":\"blocklist\"") && l.contains(&BLOCKED_V4.to_string())),
        "the local alert log has no blocklist alert:\n{log}"
    );
    Ok(())
}
