//! What a connection failure does to messages the receiver's TCP never acknowledged: they go back
//! to the queue and are sent again, in order, on the next connection. The receiver here is a bare
//! TCP listener (no rsyslog) because the test must control exactly what is acknowledged: a tiny
//! receive buffer that nobody reads, then a reset.
use std::{
    collections::BTreeSet,
    time::{Duration, UNIX_EPOCH},
};

use gateway_alerts::{Alert, Backoff, SyslogConfig, SyslogSink, SyslogTransport};
use gateway_common::{Reason, Role};
use tokio::{io::AsyncReadExt as _, net::TcpSocket};

const PATIENCE: Duration = Duration::from_secs(60);

fn alert(n: u64) -> Alert {
    Alert {
        time: UNIX_EPOCH + Duration::from_millis(1_735_787_045_000 + n),
        host: "gw".to_owned(),
        reason: Reason::Blocklist,
        role: Role::Lan,
        ingress: "lan0".to_owned(),
        egress: None,
        family: 4,
        src: Some("10.10.0.2".parse().expect("addr")),
        dst: Some("203.0.113.66".parse().expect("addr")),
        proto: 6,
        sport: 51234,
        dport: 443,
        bytes: 74,
        tcp_flags: 2,
        rule: "feed:soc-indicators".to_owned(),
        community_id: None,
        suppressed: 0,
        policy: "ward-office".to_owned(),
        generation: n,
        domain: None,
        domain_match: None,
        domain_via: None,
    }
}

/// Splits octet-counted frames off the front of `buf`; returns the generation of each.
fn take_frames(buf: &mut Vec<u8>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(sp) = buf.iter().position(|&b| b == b' ') {
        let len: usize = std::str::from_utf8(&buf[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad MSG-LEN in {:?}", String::from_utf8_lossy(buf)));
        if buf.len() < sp + 1 + len {
            break;
        }
        let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).expect("utf8");
        buf.drain(..sp + 1 + len);
        let g = msg
            .split("generation=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| panic!("no generation in {msg:?}"));
        out.push(g);
    }
    out
}

#[tokio::test]
async fn unacknowledged_messages_are_sent_again_after_a_reset() {
    const N: u64 = 2000;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut config = SyslogConfig::new("fake", format!("127.0.0.1:{port}"), SyslogTransport::Tcp);
    config.queue = N as usize;
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    let sink = SyslogSink::start(config).expect("start");
    // Queued while nobody listens, so the first connection starts with full batches.
    for n in 0..N {
        assert!(sink.send(&alert(n)));
    }

    // A receiver whose TCP can take only a few KB (less than one 64 KiB batch) and that never
    // reads: no batch can be acknowledged in full.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket
        .bind(format!("127.0.0.1:{port}").parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(8).expect("listen");
    let (first, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the sink reconnects")
        .expect("accept");
    let mut byte = [0u8; 1];
    tokio::time::timeout(PATIENCE, first.peek(&mut byte))
        .await
        .expect("the sink writes")
        .expect("peek");
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.lost, stats.queued), (0, 0, N as usize));
    assert!(stats.connected);

    // Reset: what the receiver's kernel held is thrown away, like a crashed receiver's.
    first.set_zero_linger().expect("linger 0");
    drop(first);

    let (mut second, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the sink reconnects after the reset")
        .expect("accept");
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while (got.len() as u64) < N {
        let n = tokio::time::timeout(PATIENCE, second.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("only {} of {N} alerts came again", got.len()))
            .expect("read");
        assert!(n > 0, "the sink closed after {} alerts", got.len());
        buf.extend_from_slice(&chunk[..n]);
        got.extend(take_frames(&mut buf));
    }
    // Everything again, in the original order, once.
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), N as usize);

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sink.stats().sent < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all acknowledged: {:?}",
            sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = sink.stats();
    assert_eq!((stats.sent, stats.lost, stats.queued), (N, 0, 0));
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("reset") || e.contains("Broken pipe")),
        "{stats:?}"
    );
}
