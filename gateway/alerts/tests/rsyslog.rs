//! The syslog sink against a real receiver (rsyslogd, see `support`): every alert arrives with
//! every field as rsyslog parses it, over TCP and over TLS with client certificates; a receiver
//! that is down or restarts gets the queue once it is back; overflow counts exactly.
//!
//! Needs `apt-get install -y --no-install-recommends rsyslog rsyslog-openssl`; fails (does not
//! skip) without it.
mod support;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, UNIX_EPOCH},
};

use gateway_alerts::{
    Alert, Alerter, Backoff, Facility, JsonlConfig, JsonlSink, SinkKind, SyslogConfig, SyslogSink,
    SyslogTransport, rfc3339,
    syslog::{self, BOM, SD_ID},
};
use gateway_common::{Reason, Role};
use serde_json::Value;
use support::{Pki, Rsyslog, ServerTls, pki, wait_until};

/// Alert number `n`: its generation is `n` (the key the checks find it by); the other fields
/// vary so that both address families, optional fields present and absent, and rule/policy
/// names with `"`, `\` and `]` all travel.
fn alert(n: u64) -> Alert {
    let drops: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| r.verdict() == gateway_common::Verdict::Drop)
        .collect();
    let v6 = n % 2 == 1;
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        (
            "2001:db8:10::2".parse().expect("addr"),
            format!("2001:db8:66::{:x}", n + 1).parse().expect("addr"),
        )
    } else {
        (
            "10.10.0.2".parse().expect("addr"),
            format!("203.0.113.{}", n % 250 + 1).parse().expect("addr"),
        )
    };
    Alert {
        time: UNIX_EPOCH + Duration::from_millis(1_735_787_045_000 + n * 7),
        host: "gw-ward-07".to_owned(),
        reason: drops[n as usize % drops.len()],
        role: Role::ALL[n as usize % 3],
        ingress: "lan0".to_owned(),
        egress: n.is_multiple_of(3).then(|| "inet0".to_owned()),
        family: if v6 { 6 } else { 4 },
        src: Some(src),
        dst: Some(dst),
        proto: if n.is_multiple_of(4) { 17 } else { 6 },
        sport: 40_000 + n as u16,
        dport: 443,
        bytes: 60 + n as u32,
        tcp_flags: 0x12,
        rule: if n.is_multiple_of(2) {
            format!(r#"feed:odd "name" \ with ] bracket #{n}"#)
        } else {
            format!("system:npdb-{n}")
        },
        community_id: (n % 2 == 1).then(|| format!("1:abc{n}+/=")),
        suppressed: (n % 7) as u32,
        policy: r#"ward "office" ]\"#.to_owned(),
        generation: n,
        domain: n.is_multiple_of(5).then(|| format!("evil-{n}.example")),
        domain_match: None,
        domain_via: None,
    }
}

/// The structured data an alert must arrive with, written out here from the alert's fields (not
/// with the crate's formatter) so the check is independent of the code under test.
fn expected_params(a: &Alert) -> Value {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_owned(), Value::String(v));
    };
    put("reason", a.reason.as_str().to_owned());
    put("role", a.role.as_str().to_owned());
    put("ingress", a.ingress.clone());
    if let Some(e) = &a.egress {
        put("egress", e.clone());
    }
    put("family", a.family.to_string());
    if let Some(s) = a.src {
        put("src", s.to_string());
    }
    if let Some(d) = a.dst {
        put("dst", d.to_string());
    }
    put("proto", a.proto.to_string());
    put("sport", a.sport.to_string());
    put("dport", a.dport.to_string());
    put("bytes", a.bytes.to_string());
    put("tcp_flags", a.tcp_flags.to_string());
    put("rule", a.rule.clone());
    if let Some(c) = &a.community_id {
        put("community_id", c.clone());
    }
    put("suppressed", a.suppressed.to_string());
    put("policy", a.policy.clone());
    put("generation", a.generation.to_string());
    if let Some(d) = &a.domain {
        put("domain", d.clone());
    }
    Value::Object(m.into_iter().collect())
}

fn generation(m: &Value) -> u64 {
    m["rfc5424-sd"][SD_ID]["generation"]
        .as_str()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("message without a generation: {m}"))
}

/// `m` is alert `a` in every field, as rsyslog parsed it.
fn check(m: &Value, a: &Alert, facility: Facility) {
    let ctx = || format!("message {m}");
    let pri = syslog::prival(facility, syslog::severity(a.reason));
    assert_eq!(m["pri"], pri.to_string(), "PRI; {}", ctx());
    assert_eq!(
        m["timestamp"],
        rfc3339::format(a.time),
        "TIMESTAMP; {}",
        ctx()
    );
    assert_eq!(m["hostname"], a.host, "HOSTNAME; {}", ctx());
    assert_eq!(m["app"], "gatewayd", "APP-NAME; {}", ctx());
    assert_eq!(
        m["procid"],
        std::process::id().to_string(),
        "PROCID; {}",
        ctx()
    );
    assert_eq!(m["msgid"], a.reason.as_str(), "MSGID; {}", ctx());
    assert_eq!(
        m["rfc5424-sd"],
        serde_json::json!({ SD_ID: expected_params(a) }),
        "STRUCTURED-DATA; {}",
        ctx()
    );
    let msg = m["msg"].as_str().expect("msg");
    assert_eq!(msg, format!("{BOM}{}", a.sentence()), "MSG; {}", ctx());
}

/// Each alert of `range` arrived (at least once), intact.
fn check_all(received: &[Value], range: std::ops::Range<u64>, facility: Facility) {
    for n in range {
        let m = received
            .iter()
            .find(|m| generation(m) == n)
            .unwrap_or_else(|| panic!("alert {n} never arrived"));
        check(m, &alert(n), facility);
    }
}

fn has_all(received: &[Value], range: std::ops::Range<u64>) -> bool {
    range
        .into_iter()
        .all(|n| received.iter().any(|m| generation(m) == n))
}

fn tcp_config(name: &str, rs: &Rsyslog, queue: usize) -> SyslogConfig {
    let mut c = SyslogConfig::new(name, rs.addr(), SyslogTransport::Tcp);
    c.queue = queue;
    // Short delays so a test does not wait for a long backoff once the receiver is up.
    c.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    c
}

async fn wait_sent(sink: &SyslogSink, n: u64) {
    wait_until(
        &format!("{} acknowledged {n} alerts", sink.name()),
        || sink.stats().sent >= n,
        || format!("{:?}", sink.stats()),
    )
    .await;
}

#[tokio::test]
async fn tcp_delivers_every_alert_with_its_fields() {
    let mut rs = Rsyslog::tcp();
    rs.start().await;
    let mut config = tcp_config("soc-tcp", &rs, 1000);
    config.facility = Facility::Local5;
    let sink = SyslogSink::start(config).expect("start");
    for n in 0..60 {
        assert!(sink.send(&alert(n)), "queue has room for alert {n}");
    }
    let received = rs.wait_for("60 alerts", |r| has_all(r, 0..60)).await;
    check_all(&received, 0..60, Facility::Local5);
    assert_eq!(
        received.len(),
        60,
        "each exactly once on a healthy connection"
    );
    // Order is kept on one connection.
    let order: Vec<u64> = received.iter().map(generation).collect();
    assert_eq!(order, (0..60).collect::<Vec<_>>());
    wait_sent(&sink, 60).await;
    let stats = sink.stats();
    assert_eq!(stats.kind, SinkKind::Syslog);
    assert_eq!((stats.sent, stats.lost, stats.queued), (60, 0, 0));
    assert!(stats.connected);
}

#[tokio::test]
async fn tls_with_client_certificates_delivers_every_alert() {
    let certs = tempfile::tempdir().expect("tempdir");
    let Pki { ca, server, client } = pki(certs.path(), "soc");
    let mut rs = Rsyslog::tls(ServerTls {
        ca: ca.clone(),
        cert: server.cert,
        key: server.key,
        permitted_peer: "gateway.test".to_owned(),
    });
    rs.start().await;
    let mut config = tcp_config("soc-tls", &rs, 1000);
    config.transport = SyslogTransport::Tls {
        ca,
        identity: Some(client),
        server_name: "syslog.test".to_owned(),
    };
    let sink = SyslogSink::start(config).expect("start");
    for n in 0..40 {
        assert!(sink.send(&alert(n)));
    }
    let received = rs
        .wait_for("40 alerts over TLS", |r| has_all(r, 0..40))
        .await;
    check_all(&received, 0..40, Facility::Local0);
    assert_eq!(received.len(), 40);
    wait_sent(&sink, 40).await;
    let stats = sink.close(support::PATIENCE).await;
    assert_eq!((stats.sent, stats.lost, stats.queued), (40, 0, 0));
    // Closed with close_notify: rsyslog has no read error to report for our session. (It does
    // report the readiness probe, a bare TCP connection that never starts a handshake, as an
    // SSL_accept error.)
    rs.stop();
    let said = std::fs::read_to_string(rs.dir().join("stderr")).unwrap_or_default();
    assert!(
        !said.contains("osslRecordRecv"),
        "the sink should close TLS cleanly; rsyslogd said:\n{said}"
    );
}

#[tokio::test]
async fn tls_refuses_a_receiver_from_another_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    let soc = pki(certs.path(), "soc");
    let other = pki(certs.path(), "other");
    let mut rs = Rsyslog::tls(ServerTls {
        ca: soc.ca.clone(),
        cert: soc.server.cert,
        key: soc.server.key,
        permitted_peer: "gateway.test".to_owned(),
    });
    rs.start().await;
    let mut config = tcp_config("soc-wrong-ca", &rs, 100);
    config.transport = SyslogTransport::Tls {
        ca: other.ca,
        identity: Some(other.client),
        server_name: "syslog.test".to_owned(),
    };
    let sink = SyslogSink::start(config).expect("start");
    for n in 0..5 {
        assert!(sink.send(&alert(n)));
    }
    wait_until(
        "the sink reports the certificate error",
        || {
            sink.stats()
                .last_error
                .is_some_and(|e| e.contains("certificate"))
        },
        || format!("{:?}", sink.stats()),
    )
    .await;
    let stats = sink.stats();
    assert!(!stats.connected);
    assert_eq!((stats.sent, stats.lost, stats.queued), (0, 0, 5));
    assert!(rs.received().is_empty());
}

#[tokio::test]
async fn alerts_queued_while_the_receiver_is_down_arrive_when_it_starts() {
    let mut rs = Rsyslog::tcp();
    let sink = SyslogSink::start(tcp_config("soc-late", &rs, 100)).expect("start");
    for n in 0..80 {
        assert!(sink.send(&alert(n)));
    }
    wait_until(
        "the sink reports the refused connection",
        || sink.stats().last_error.is_some(),
        || format!("{:?}", sink.stats()),
    )
    .await;
    let stats = sink.stats();
    assert!(!stats.connected);
    assert_eq!((stats.sent, stats.lost, stats.queued), (0, 0, 80));

    rs.start().await;
    let received = rs
        .wait_for("the 80 queued alerts", |r| has_all(r, 0..80))
        .await;
    check_all(&received, 0..80, Facility::Local0);
    let order: Vec<u64> = received.iter().map(generation).collect();
    assert_eq!(order, (0..80).collect::<Vec<_>>(), "in order, once each");
    wait_sent(&sink, 80).await;
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.lost, stats.queued), (80, 0, 0));
    assert!(stats.connected);
}

#[tokio::test]
async fn queue_overflow_counts_exactly_what_was_lost() {
    let mut rs = Rsyslog::tcp();
    let sink = SyslogSink::start(tcp_config("soc-small", &rs, 10)).expect("start");
    let accepted: Vec<bool> = (0..25).map(|n| sink.send(&alert(n))).collect();
    assert_eq!(accepted, (0..25).map(|n| n < 10).collect::<Vec<_>>());
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.lost, stats.queued), (0, 15, 10));

    rs.start().await;
    let received = rs
        .wait_for("the 10 queued alerts", |r| has_all(r, 0..10))
        .await;
    wait_sent(&sink, 10).await;
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.lost, stats.queued), (10, 15, 0));
    // Nothing is left to send, so nothing more can arrive: exactly the first ten.
    let received = if received.len() == 10 {
        received
    } else {
        rs.received()
    };
    let order: Vec<u64> = received.iter().map(generation).collect();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    check_all(&received, 0..10, Facility::Local0);
}

#[tokio::test]
async fn a_restarted_receiver_gets_what_it_missed() {
    let mut rs = Rsyslog::tcp();
    rs.start().await;
    let sink = SyslogSink::start(tcp_config("soc-restart", &rs, 1000)).expect("start");
    for n in 0..20 {
        assert!(sink.send(&alert(n)));
    }
    rs.wait_for("the first 20", |r| has_all(r, 0..20)).await;
    wait_sent(&sink, 20).await;

    rs.stop();
    wait_until(
        "the sink notices the receiver went away",
        || !sink.stats().connected,
        || format!("{:?}", sink.stats()),
    )
    .await;
    for n in 20..50 {
        assert!(sink.send(&alert(n)));
    }
    assert_eq!(sink.stats().queued, 30);

    rs.start().await;
    let received = rs
        .wait_for("all 50 across the restart", |r| has_all(r, 0..50))
        .await;
    check_all(&received, 0..50, Facility::Local0);
    wait_sent(&sink, 50).await;
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.lost, stats.queued), (50, 0, 0));
}

#[tokio::test]
async fn the_alerter_fans_out_and_close_delivers_what_is_queued() {
    let mut rs = Rsyslog::tcp();
    rs.start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alerts.jsonl");
    let jsonl = JsonlSink::open(JsonlConfig {
        path: path.clone(),
        max_bytes: 1 << 20,
        keep: 3,
    })
    .expect("jsonl");
    let syslog = SyslogSink::start(tcp_config("soc", &rs, 1000)).expect("syslog");
    let alerter = Alerter::new(vec![jsonl], vec![syslog]);
    for n in 0..30 {
        alerter.send(&alert(n));
    }
    // Closed at once: close itself waits until the receiver acknowledged everything.
    let stats = alerter.close(support::PATIENCE).await;
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].kind, SinkKind::Jsonl);
    assert_eq!(stats[0].name, path.display().to_string());
    assert_eq!((stats[0].sent, stats[0].lost), (30, 0));
    assert_eq!(stats[1].name, "soc");
    assert_eq!((stats[1].sent, stats[1].lost, stats[1].queued), (30, 0, 0));

    let received = rs.wait_for("30 alerts", |r| has_all(r, 0..30)).await;
    check_all(&received, 0..30, Facility::Local0);
    let lines: Vec<Alert> = std::fs::read_to_string(&path)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines, (0..30).map(alert).collect::<Vec<_>>());
}

#[tokio::test]
async fn close_counts_what_a_down_receiver_never_got_as_lost() {
    let down = Rsyslog::tcp();
    let sink = SyslogSink::start(tcp_config("soc-down", &down, 100)).expect("syslog");
    for n in 0..7 {
        assert!(sink.send(&alert(n)));
    }
    let stats = sink.close(Duration::from_millis(300)).await;
    assert_eq!((stats.sent, stats.lost, stats.queued), (0, 7, 0));
    assert!(!stats.connected);
}
