//! UDP export against real collectors: nfcapd 1.7 stores the flows, nfdump reads them back; tshark
//! decodes the same datagrams (forwarding status, firewall event, end reason and the enterprise
//! strings, which nfdump 1.7 does not read from IPFIX). Needs nfdump and tshark installed, and root
//! for the capture.
mod common;

use std::{sync::Arc, time::Duration};

use common::{Capture, Nfcapd, check_common, check_tshark_flow, find, known_records};
use gateway_common::Verdict;
use gateway_flows::{CollectorConfig, Exporter, Format, Transport, fields};

fn udp(format: Format, addr: std::net::SocketAddr, refresh: Duration) -> CollectorConfig {
    CollectorConfig {
        name: "soc-udp".to_owned(),
        format,
        transport: Transport::Udp,
        addr,
        template_refresh: refresh,
        observation_domain: 7,
        spool: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfix_over_udp_reaches_nfcapd_and_tshark_decodes_every_field() {
    let nfcapd = Nfcapd::start();
    let port = nfcapd.port;
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
    let capture = Capture::start(&format!("udp and dst port {port}"), || {
        let _ = probe.send_to(&common::marker(), nfcapd.addr());
    });
    let records = known_records();
    let exporter = Exporter::spawn(udp(Format::Ipfix, nfcapd.addr(), Duration::from_secs(60)))
        .expect("exporter");
    assert!(exporter.send(Arc::from(records.clone())));
    let stats = exporter.shutdown().await;
    assert_eq!(stats.records_sent, records.len() as u64);
    assert_eq!(stats.records_lost(), 0);
    assert_eq!(stats.errors, 0);

    // nfdump 1.7 reads tuple, counters, times, interfaces and flags from IPFIX (it ignores IEs 89,
    // 233 and 136 in IPFIX; the tshark half below checks those).
    let flows = tokio::task::spawn_blocking(move || nfcapd.finish())
        .await
        .expect("nfcapd");
    check_common(&flows, &records);

    let decode = format!("udp.port=={port},cflow");
    let got = capture.wait_flows(&decode, records.len(), Duration::from_secs(30));
    assert_eq!(
        got.len(),
        records.len(),
        "tshark flows: {got:#?}\n{}",
        capture.summary(&decode)
    );
    for (f, r) in got.iter().zip(&records) {
        check_tshark_flow(f, r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netflow_v9_over_udp_reaches_nfcapd_with_forwarding_status_and_events() {
    let nfcapd = Nfcapd::start();
    let records = known_records();
    let exporter = Exporter::spawn(udp(
        Format::NetflowV9,
        nfcapd.addr(),
        Duration::from_secs(60),
    ))
    .expect("exporter");
    assert!(exporter.send(Arc::from(records.clone())));
    let stats = exporter.shutdown().await;
    assert_eq!(stats.records_sent, records.len() as u64);
    assert_eq!(stats.records_lost(), 0);
    let flows = tokio::task::spawn_blocking(move || nfcapd.finish())
        .await
        .expect("nfcapd");
    // Times went over the wire as uptime offsets; nfdump must get the same milliseconds back.
    check_common(&flows, &records);
    for r in &records {
        let f = find(&flows, r);
        assert_eq!(
            f["fwd_status"],
            fields::forwarding_status(r.reason),
            "{r:?}\n{f:#}"
        );
        let event = match fields::firewall_event(r.reason, r.end_reason) {
            fields::firewall_event::FLOW_DENIED => "DENIED",
            fields::firewall_event::FLOW_DELETED => "DELETE",
            _ => "UPDATE",
        };
        assert_eq!(f["event"], event, "{r:?}\n{f:#}");
        match r.reason.verdict() {
            Verdict::Pass => assert_eq!(f["fwd_status"].as_u64().map(|s| s >> 6), Some(1)),
            Verdict::Drop => assert_eq!(f["event"], "DENIED"),
        }
    }
}

/// Over UDP a collector that starts late (or restarts) learns the templates at the next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_sent_again_for_a_collector_that_starts_late() {
    for format in [Format::Ipfix, Format::NetflowV9] {
        let port = common::free_udp_port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // The first templates go to a closed port.
        let exporter =
            Exporter::spawn(udp(format, addr, Duration::from_millis(300))).expect("exporter");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let nfcapd = tokio::task::spawn_blocking(move || Nfcapd::start_on(port))
            .await
            .expect("nfcapd");
        let before = exporter.stats().messages_sent;
        assert!(
            common::eventually(Duration::from_secs(10), || exporter.stats().messages_sent
                >= before + 2)
            .await,
            "templates are refreshed"
        );
        let records = known_records();
        assert!(exporter.send(Arc::from(records.clone())));
        let stats = exporter.shutdown().await;
        assert_eq!(stats.records_sent, records.len() as u64);
        let flows = tokio::task::spawn_blocking(move || nfcapd.finish())
            .await
            .expect("nfcapd");
        check_common(&flows, &records);
    }
}
