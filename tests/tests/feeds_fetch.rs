//! The remote-feed fetcher against a real HTTPS server on loopback (no root needed): a good list is
//! stored, a 304 keeps it, and every way a download can go wrong is refused with its reason while
//! the last good copy stays byte for byte what it was.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use gateway_daemon::feeds::{attempt, schedule::Outcome, store::Store};
use gateway_metrics::snapshot::FeedFailure;
use gateway_policy::{FeedFormat, remote::RemoteFeed};
use gateway_tests::feed_server::{FeedServer, Mode};

const GOOD: &[u8] = b"# test feed\n198.51.100.7\n192.0.2.0/25\n2001:db8:66::/48\n";

fn feed(server: &FeedServer, ca: &std::path::Path) -> Result<RemoteFeed> {
    Ok(RemoteFeed {
        name: "lab".into(),
        format: FeedFormat::Plain,
        url: gateway_policy::remote::parse_https_url(&server.url("/feeds/lab.txt"))
            .map_err(anyhow::Error::msg)?,
        refresh: Duration::from_secs(60),
        max_bytes: 4096,
        ca: Some(ca.to_owned()),
        min_entries: 2,
        timeout: Duration::from_secs(2),
    })
}

fn failed(o: &Outcome) -> Option<FeedFailure> {
    match o {
        Outcome::Failed(e) => Some(e.reason),
        _ => None,
    }
}

#[test]
fn good_lists_are_stored_and_every_failure_keeps_the_last_good_copy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = FeedServer::on_loopback(Mode::Serve {
        body: GOOD.to_vec(),
        etag: "\"v1\"".into(),
    })?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem())?;
    let store = Store::new(dir.path().join("feeds"));
    let f = feed(&server, &ca)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fetch = |f: &RemoteFeed| rt.block_on(attempt(f, &store));

    // Good: stored with its metadata.
    assert_eq!(fetch(&f), Outcome::New { entries: 3 });
    let copy = store.data_path(&f);
    ensure!(std::fs::read(&copy)? == GOOD, "stored copy differs");
    let meta = store.load(&f).context("metadata")?;
    assert_eq!((meta.entries, meta.etag.as_deref()), (3, Some("\"v1\"")));

    // Unchanged: a conditional request, answered 304.
    assert_eq!(fetch(&f), Outcome::NotModified);
    assert_eq!(server.last_if_none_match().as_deref(), Some("\"v1\""));

    // Same bytes under a new ETag: stored metadata only, nothing to apply.
    server.set(Mode::Serve {
        body: GOOD.to_vec(),
        etag: "\"v2\"".into(),
    });
    assert_eq!(fetch(&f), Outcome::Same { entries: 3 });

    let big = "203.0.113.1\n".repeat(400).into_bytes(); // 4800 bytes > max_bytes 4096
    let cases: Vec<(&str, Mode, FeedFailure, &str)> = vec![
        (
            "404",
            Mode::Status(404),
            FeedFailure::HttpStatus,
            "HTTP 404 Not Found",
        ),
        (
            "500",
            Mode::Status(500),
            FeedFailure::HttpStatus,
            "HTTP 500 Internal Server Error",
        ),
        (
            "connection cut mid-body",
            Mode::Cut {
                body: GOOD.to_vec(),
                at: 20,
            },
            FeedFailure::Truncated,
            "body cut after",
        ),
        (
            "Content-Length larger than the body",
            Mode::LengthMismatch {
                body: GOOD.to_vec(),
                claimed: GOOD.len() + 100,
            },
            FeedFailure::Truncated,
            "body cut after",
        ),
        (
            "close-delimited body cut without TLS close_notify",
            Mode::CutUntilClose {
                body: GOOD.to_vec(),
                at: 20,
            },
            FeedFailure::Truncated,
            "body cut after",
        ),
        (
            "chunked body without its last chunk",
            Mode::ChunkedCut {
                body: GOOD.to_vec(),
                at: 20,
            },
            FeedFailure::Truncated,
            "body cut after",
        ),
        (
            "empty body",
            Mode::Serve {
                body: Vec::new(),
                etag: "\"e\"".into(),
            },
            FeedFailure::Empty,
            "empty body",
        ),
        (
            "only comments",
            Mode::Serve {
                body: b"# nothing today\n".to_vec(),
                etag: "\"c\"".into(),
            },
            FeedFailure::Empty,
            "no entries",
        ),
        (
            "malformed line",
            Mode::Serve {
                body: b"198.51.100.7\n198.51.100.300\n".to_vec(),
                etag: "\"m\"".into(),
            },
            FeedFailure::Malformed,
            "/feeds/lab.txt:2: entry: \"198.51.100.300\"",
        ),
        (
            "not UTF-8",
            Mode::Serve {
                body: b"198.51.100.7\n\xff\xfe\n".to_vec(),
                etag: "\"u\"".into(),
            },
            FeedFailure::Malformed,
            "not UTF-8",
        ),
        (
            "fewer than min_entries",
            Mode::Serve {
                body: b"198.51.100.7\n".to_vec(),
                etag: "\"f\"".into(),
            },
            FeedFailure::TooFewEntries,
            "1 entries; min_entries is 2",
        ),
        (
            "Content-Length over max_bytes",
            Mode::Serve {
                body: big.clone(),
                etag: "\"b\"".into(),
            },
            FeedFailure::TooLarge,
            "Content-Length 4800 exceeds max_bytes 4096",
        ),
        (
            "streamed body over max_bytes",
            Mode::ServeUntilClose { body: big },
            FeedFailure::TooLarge,
            "body exceeds max_bytes 4096",
        ),
        (
            "certificate from an unknown CA",
            Mode::UnknownCa {
                body: GOOD.to_vec(),
            },
            FeedFailure::Tls,
            "invalid peer certificate: UnknownIssuer",
        ),
        (
            "server stalls",
            Mode::Stall,
            FeedFailure::Timeout,
            "no complete answer within 2 s",
        ),
    ];
    for (what, mode, reason, detail) in cases {
        server.set(mode);
        let o = fetch(&f);
        assert_eq!(failed(&o), Some(reason), "{what}: {o:?}");
        let Outcome::Failed(e) = &o else {
            unreachable!()
        };
        assert!(
            e.detail.contains(detail),
            "{what}: {:?} lacks {detail:?}",
            e.detail
        );
        ensure!(
            std::fs::read(&copy)? == GOOD,
            "{what}: the last good copy changed"
        );
        assert_eq!(store.load(&f).map(|m| m.entries), Some(3), "{what}");
    }

    // Nobody listening, and a name that does not resolve.
    let port = server.addr().port();
    drop(server);
    let mut down = f.clone();
    down.url = gateway_policy::remote::parse_https_url(&format!("https://127.0.0.1:{port}/x"))
        .map_err(anyhow::Error::msg)?;
    assert_eq!(failed(&fetch(&down)), Some(FeedFailure::Connect));
    let mut nxdomain = f.clone();
    // A slow resolver must fail as dns, not hit the download timeout.
    nxdomain.timeout = Duration::from_secs(60);
    nxdomain.url = gateway_policy::remote::parse_https_url("https://feeds.invalid/x")
        .map_err(anyhow::Error::msg)?;
    assert_eq!(failed(&fetch(&nxdomain)), Some(FeedFailure::Dns));
    ensure!(std::fs::read(&copy)? == GOOD, "the last good copy changed");
    Ok(())
}

#[test]
fn a_changed_list_replaces_the_copy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = FeedServer::on_loopback(Mode::Serve {
        body: GOOD.to_vec(),
        etag: "\"v1\"".into(),
    })?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem())?;
    let store = Store::new(dir.path().join("feeds"));
    let f = feed(&server, &ca)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    assert_eq!(
        rt.block_on(attempt(&f, &store)),
        Outcome::New { entries: 3 }
    );
    let next = b"198.51.100.8\n198.51.100.9\n".to_vec();
    server.set(Mode::Serve {
        body: next.clone(),
        etag: "\"v2\"".into(),
    });
    assert_eq!(
        rt.block_on(attempt(&f, &store)),
        Outcome::New { entries: 2 }
    );
    assert_eq!(server.last_if_none_match().as_deref(), Some("\"v1\""));
    ensure!(
        std::fs::read(store.data_path(&f))? == next,
        "copy not replaced"
    );
    Ok(())
}
