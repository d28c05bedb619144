//! IPFIX over TCP and TLS, checked by real decoders — tshark on a loopback capture (TCP) and nfcapd
//! fed by a relay that turns each received message into a UDP datagram (TLS) — and the spool:
//! collector down, collector back, spool over its bound, exporter restarted. Needs nfdump and tshark
//! installed, and root for the capture.
mod common;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use common::{
    Capture, Nfcapd, StreamCollector, check_common, check_tshark_flow, eventually, free_tcp_port,
    known_records, numbered, pki,
};
use gateway_flows::{
    CollectorConfig, ExportStats, Exporter, FlowRecord, Format, SpoolConfig, Transport,
    ipfix::TEMPLATE_SET_ID, spool::MIN_BYTES,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config(transport: Transport, addr: SocketAddr, spool: Option<(&Path, u64)>) -> CollectorConfig {
    CollectorConfig {
        name: "soc-stream".to_owned(),
        format: Format::Ipfix,
        transport,
        addr,
        template_refresh: Duration::from_secs(60),
        observation_domain: 7,
        spool: spool.map(|(dir, max_bytes)| SpoolConfig {
            dir: dir.to_owned(),
            max_bytes,
        }),
    }
}

fn send_in_batches(exporter: &Exporter, records: &[FlowRecord], batch: usize) {
    for chunk in records.chunks(batch) {
        assert!(exporter.send(Arc::from(chunk)), "queue has room");
    }
}

/// Waits until `cond` holds for the exporter's statistics; panics with them if it does not.
async fn until(exporter: &Exporter, what: &str, cond: impl Fn(&ExportStats) -> bool) {
    let ok = eventually(PATIENCE, || cond(&exporter.stats())).await;
    assert!(ok, "{what}: {:#?}", exporter.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfix_over_tcp_is_decoded_by_tshark() {
    let port = free_tcp_port();
    // The probe's connection attempt (refused: nothing listens yet) proves the capture is live.
    let capture = Capture::start(&format!("tcp port {port}"), || {
        let _ = std::net::TcpStream::connect_timeout(&local(port), Duration::from_millis(200));
    });
    let collector = StreamCollector::start(local(port), None, None).await;
    let records = known_records();
    let exporter = Exporter::spawn(config(Transport::Tcp, collector.addr, None)).expect("exporter");
    assert!(exporter.send(Arc::from(records.clone())));
    assert_eq!(
        collector.wait_records(records.len(), PATIENCE).await,
        records
    );
    let stats = exporter.shutdown().await;
    assert_eq!(stats.records_sent, records.len() as u64);
    assert_eq!(stats.records_lost(), 0);

    let decode = format!("tcp.port=={port},cflow");
    let got = tokio::task::spawn_blocking(move || {
        let flows = capture.wait_flows(&decode, records.len(), PATIENCE);
        let summary = capture.summary(&decode);
        (flows, summary, records)
    })
    .await
    .expect("tshark");
    let (flows, summary, records) = got;
    assert_eq!(
        flows.len(),
        records.len(),
        "tshark flows: {flows:#?}\n{summary}"
    );
    for (f, r) in flows.iter().zip(&records) {
        check_tshark_flow(f, r);
    }
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfix_over_mutual_tls_reaches_nfcapd_through_a_relay() {
    let pki = pki();
    let nfcapd = tokio::task::spawn_blocking(Nfcapd::start)
        .await
        .expect("nfcapd");
    let server = gateway_tls::server_config(&pki.server, Some(&pki.ca)).expect("server config");
    let collector = StreamCollector::start(local(0), Some(server), Some(nfcapd.addr())).await;
    let records = known_records();
    let tls = Transport::Tls {
        ca: pki.ca.clone(),
        identity: Some(pki.client.clone()),
        server_name: "collector.test".to_owned(),
    };
    let exporter = Exporter::spawn(config(tls, collector.addr, None)).expect("exporter");
    assert!(exporter.send(Arc::from(records.clone())));
    assert_eq!(
        collector.wait_records(records.len(), PATIENCE).await,
        records
    );
    let stats = exporter.shutdown().await;
    assert_eq!(stats.records_sent, records.len() as u64);
    assert_eq!((stats.records_lost(), stats.errors), (0, 0));
    let flows = tokio::task::spawn_blocking(move || nfcapd.finish())
        .await
        .expect("nfcapd");
    check_common(&flows, &records);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_collector_the_ca_did_not_sign() {
    let (ours, theirs) = (pki(), pki());
    let server = gateway_tls::server_config(&theirs.server, None).expect("server config");
    let collector = StreamCollector::start(local(0), Some(server), None).await;
    let tls = Transport::Tls {
        ca: ours.ca.clone(),
        identity: None,
        server_name: "collector.test".to_owned(),
    };
    let exporter = Exporter::spawn(config(tls, collector.addr, None)).expect("exporter");
    until(&exporter, "handshakes fail", |s| s.errors >= 2).await;
    send_in_batches(&exporter, &numbered(10), 5);
    let stats = exporter.shutdown().await;
    assert!(!stats.connected);
    assert_eq!(stats.records_sent, 0);
    assert_eq!(stats.lost_undeliverable, 10, "no spool: counted lost");
    assert!(collector.records().is_empty());
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_wait_in_the_spool_while_the_collector_is_down_and_arrive_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_tcp_port();
    let exporter = Exporter::spawn(config(
        Transport::Tcp,
        local(port),
        Some((dir.path(), 8 << 20)),
    ))
    .expect("exporter");
    let records = numbered(1200);
    send_in_batches(&exporter, &records[..1000], 50);
    until(&exporter, "all spooled", |s| s.spooled_records == 1000).await;
    let stats = exporter.stats();
    assert!(!stats.connected);
    assert!(stats.errors > 0, "failed connects are counted");
    assert!(stats.spooled_bytes > 0);
    assert_eq!((stats.records_sent, stats.records_lost()), (0, 0));

    let collector = StreamCollector::start(local(port), None, None).await;
    let got = collector.wait_records(1000, PATIENCE).await;
    assert_eq!(got, records[..1000], "all delivered, in order");
    until(&exporter, "spool empty", |s| {
        s.spooled_records == 0 && s.connected
    })
    .await;
    send_in_batches(&exporter, &records[1000..], 50);
    assert_eq!(collector.wait_records(1200, PATIENCE).await, records);
    let stats = exporter.shutdown().await;
    assert_eq!(stats.records_sent, 1200);
    assert_eq!(
        (
            stats.records_lost(),
            stats.spooled_records,
            stats.spooled_bytes
        ),
        (0, 0, 0)
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_over_its_bound_drops_the_oldest_and_counts_them_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_tcp_port();
    let exporter = Exporter::spawn(config(
        Transport::Tcp,
        local(port),
        Some((dir.path(), MIN_BYTES)),
    ))
    .expect("exporter");
    let records = numbered(2000);
    send_in_batches(&exporter, &records, 40);
    until(&exporter, "every record spooled or dropped", |s| {
        s.spooled_records + s.lost_spool_overflow == 2000
    })
    .await;
    let stats = exporter.stats();
    let lost = stats.lost_spool_overflow as usize;
    assert!(lost > 0, "the bound was exceeded: {stats:#?}");
    assert!(stats.spooled_bytes <= MIN_BYTES);

    let collector = StreamCollector::start(local(port), None, None).await;
    let got = collector.wait_records(2000 - lost, PATIENCE).await;
    assert_eq!(
        got,
        records[lost..],
        "the newest {} survive, in order",
        2000 - lost
    );
    until(&exporter, "spool empty", |s| s.spooled_records == 0).await;
    let stats = exporter.shutdown().await;
    assert_eq!(stats.records_sent as usize, 2000 - lost);
    assert_eq!(stats.records_lost() as usize, lost);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_survives_a_restart_of_the_exporter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_tcp_port();
    let records = numbered(350);
    let first = Exporter::spawn(config(
        Transport::Tcp,
        local(port),
        Some((dir.path(), 8 << 20)),
    ))
    .expect("exporter");
    send_in_batches(&first, &records[..300], 30);
    until(&first, "spooled", |s| s.spooled_records == 300).await;
    let stats = first.shutdown().await;
    assert_eq!((stats.spooled_records, stats.records_sent), (300, 0));

    let second = Exporter::spawn(config(
        Transport::Tcp,
        local(port),
        Some((dir.path(), 8 << 20)),
    ))
    .expect("exporter over the same spool");
    assert_eq!(
        second.stats().spooled_records,
        300,
        "it finds what the first one left"
    );
    let collector = StreamCollector::start(local(port), None, None).await;
    send_in_batches(&second, &records[300..], 25);
    assert_eq!(collector.wait_records(350, PATIENCE).await, records);
    let stats = second.shutdown().await;
    assert_eq!((stats.records_sent, stats.records_lost()), (350, 0));
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_gets_templates_again_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_tcp_port();
    let records = numbered(300);
    let collector = StreamCollector::start(local(port), None, None).await;
    let exporter = Exporter::spawn(config(
        Transport::Tcp,
        local(port),
        Some((dir.path(), 8 << 20)),
    ))
    .expect("exporter");
    send_in_batches(&exporter, &records[..100], 20);
    assert_eq!(collector.wait_records(100, PATIENCE).await, records[..100]);
    collector.stop().await;
    until(&exporter, "the close is noticed", |s| !s.connected).await;
    send_in_batches(&exporter, &records[100..200], 20);
    until(&exporter, "spooled while down", |s| {
        s.spooled_records == 100
    })
    .await;

    let collector = StreamCollector::start(local(port), None, None).await;
    send_in_batches(&exporter, &records[200..], 20);
    // The new collector only gets what was sent after the first one stopped; it can decode it
    // because the session starts with the templates.
    assert_eq!(collector.wait_records(200, PATIENCE).await, records[100..]);
    let first = &collector.messages()[0].1;
    assert_eq!(
        u16::from_be_bytes([first[16], first[17]]),
        TEMPLATE_SET_ID,
        "a new session starts with the template set"
    );
    let stats = exporter.shutdown().await;
    assert_eq!((stats.records_sent, stats.records_lost()), (300, 0));
    collector.stop().await;
}
