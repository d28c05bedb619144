//! Remote feeds end to end (R2, issue 4 item 4), and the audit log to the SOC (item 3). Needs root.
//!
//! A feed vendor on the Internet side of the lab: an HTTPS server (this process, test CA) on the
//! Internet server's address. The policy is the example one plus a remote feed of it. Checked:
//! - with no good copy yet the feed blocks nothing, the rest of the policy applies, and the SOC
//!   gets the alert;
//! - a good download blocks a lab packet to a fetched entry;
//! - truncated body, Content-Length mismatch, empty body, HTTP 404 and 500, malformed content,
//!   over max_bytes, a certificate from an unknown CA, a stalled server: each keeps the list in
//!   force (same packet still blocked, same entries), raises an alert at the SOC's rsyslogd, counts
//!   in `gateway_feed_fetch_failures_total{reason}` and shows in `gatewayctl status`;
//! - a restart of gatewayd with the server down enforces the last good copy;
//! - an apply over the management API (mutual TLS) reaches the SOC's rsyslogd as an `audit`
//!   message naming subject, action and result.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::feed_server::{FeedServer, Mode};
use gateway_tests::lab::mtls::{Remote, api_args, mint};
use gateway_tests::lab::{EXAMPLE_POLICY, Lab, Probe, Side, addr::*, daemon::workspace_root};

/// An Internet host only the remote feed lists (outside the example policy's `except` ranges and
/// its local feeds, so the remote feed alone decides).
const FEED_HIT: Ipv4Addr = Ipv4Addr::new(14, 160, 77, 77);
const FEED_PORT: u16 = 9443; // the lab servers hold 8443
const FEED: &str = "lab-remote";

fn good_list() -> Vec<u8> {
    format!("# lab remote feed\n{FEED_HIT}\n14.160.77.78\n2406:da00:77::/48\n").into_bytes()
}

/// The example policy plus the remote feed, beside a link to the example's feeds and the CA.
fn feed_policy(dir: &Path, ca_pem: &str) -> Result<PathBuf> {
    let example = workspace_root().join(EXAMPLE_POLICY);
    let mut text = std::fs::read_to_string(&example)?;
    text.push_str(&format!(
        "\n[[feed]]\nname = \"{FEED}\"\nurl = \"https://{INET_SERVER_V4}:{FEED_PORT}/feeds/{FEED}.txt\"\n\
         format = \"plain\"\nca = \"feed-ca.pem\"\nmax_bytes = 4096\ntimeout_secs = 5\nmin_entries = 2\n"
    ));
    std::fs::create_dir_all(dir)?;
    let policy = dir.join("ward-office-feeds.toml");
    std::fs::write(&policy, text)?;
    std::fs::write(dir.join("feed-ca.pem"), ca_pem)?;
    // Copies, not a link: the API apply below sends them in a bundle.
    let feeds = dir.join("feeds");
    std::fs::create_dir_all(&feeds)?;
    for f in std::fs::read_dir(example.parent().context("example dir")?.join("feeds"))? {
        let f = f?;
        std::fs::copy(f.path(), feeds.join(f.file_name()))?;
    }
    Ok(policy)
}

fn hup(lab: &Lab) -> Result<()> {
    let pid = lab.gatewayd_pid().context("gatewayd not running")?;
    let pid = i32::try_from(pid)?;
    // SAFETY: kill(2) on the pid of the gatewayd this lab started; no memory is involved.
    let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
    ensure!(sent == 0, "kill -HUP {pid}");
    Ok(())
}

/// The remote feed's row of `gatewayctl status --json`.
fn feed_row(lab: &mut Lab) -> Result<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_str(&lab.ctl_ok(&["status", "--json"])?)?;
    json["feeds"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == FEED))
        .cloned()
        .with_context(|| format!("no feed {FEED} in status: {json}"))
}

/// A sample of the metrics endpoint, scraped from the SOC.
fn metric(lab: &mut Lab, series: &str) -> Result<f64> {
    let text = lab.soc().context("soc")?.scrape()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .with_context(|| format!("no {series} in the exposition"))
}

fn failures(lab: &mut Lab, reason: &str) -> Result<f64> {
    metric(
        lab,
        &format!("gateway_feed_fetch_failures_total{{feed=\"{FEED}\",reason=\"{reason}\"}}"),
    )
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The feed alerts the SOC's rsyslogd received with `event`.
fn soc_feed_alerts(lab: &mut Lab, event: &str) -> Result<Vec<serde_json::Value>> {
    Ok(lab
        .soc()
        .context("soc")?
        .alerts()?
        .into_iter()
        .filter(|a| a["msgid"] == "feed" && a["rfc5424-sd"]["gateway-feed@32473"]["event"] == event)
        .collect())
}

fn blocked(lab: &mut Lab) -> Result<()> {
    lab.expect_dropped(
        Side::Client,
        CLIENT_V4,
        FEED_HIT,
        Probe::Ping,
        Role::Lan,
        Reason::Blocklist,
    )?;
    Ok(())
}

#[test]
fn remote_feeds_never_fail_open_and_admin_actions_reach_the_soc() -> Result<()> {
    let mut lab = Lab::up()?;
    lab.start_soc()?;
    // The feed's entry lives on the Internet side, like the lab's other Internet hosts.
    let inet = lab.ns(Side::Inet);
    let out = Command::new("ip")
        .args([
            "-n",
            &inet,
            "addr",
            "add",
            &format!("{FEED_HIT}/32"),
            "dev",
            "lo",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "ip addr add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listener = lab.listen_in(Side::Inet, SocketAddr::from((INET_SERVER_V4, FEED_PORT)))?;
    let server = FeedServer::start(listener, Mode::Status(503))?;
    let dir = lab.run_dir().join("feed-policy");
    let policy = feed_policy(&dir, server.ca_pem())?;
    let certs = lab.run_dir().join("certs");
    std::fs::create_dir_all(&certs)?;
    mint(&certs)?;
    let (listen, args) = api_args(&certs);
    lab.start_gatewayd_with(&policy, &args)?;

    // 1. No good copy yet (the vendor answers 503): the feed blocks nothing, the policy applies.
    wait(
        "first failed download alerted at the SOC",
        Duration::from_secs(20),
        || Ok(soc_feed_alerts(&mut lab, "failed")?.into_iter().next()),
    )
    .and_then(|a| {
        let sd = &a["rfc5424-sd"]["gateway-feed@32473"];
        ensure!(
            sd["feed"] == FEED && sd["reason"] == "http_status" && sd["kept_entries"] == "none",
            "first alert: {a}"
        );
        ensure!(
            a["msg"]
                .as_str()
                .is_some_and(|m| m.contains("no good list yet: this feed blocks nothing")),
            "first alert text: {a}"
        );
        Ok(())
    })?;
    let row = feed_row(&mut lab)?;
    ensure!(
        row["entries"] == 0
            && row["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("http_status: HTTP 503")),
        "status before any good download: {row}"
    );
    ensure!(
        metric(
            &mut lab,
            &format!("gateway_feed_last_fetch_ok{{feed=\"{FEED}\"}}")
        )? == 0.0,
        "last_fetch_ok"
    );
    lab.expect_delivered(Side::Client, CLIENT_V4, FEED_HIT, Probe::Ping)?;
    lab.expect_dropped(
        Side::Client,
        CLIENT_V4,
        BLOCKED_V4,
        Probe::Ping,
        Role::Lan,
        Reason::Blocklist,
    )?;

    // 2. A good download is applied (SIGHUP fetches at once instead of after the backoff).
    server.set(Mode::Serve {
        body: good_list(),
        etag: "\"v1\"".into(),
    });
    hup(&lab)?;
    wait("the fetched list in force", Duration::from_secs(20), || {
        Ok((feed_row(&mut lab)?["entries"] == 3).then_some(()))
    })?;
    blocked(&mut lab)?;
    wait("recovery alert", Duration::from_secs(10), || {
        Ok(soc_feed_alerts(&mut lab, "recovered")?.into_iter().next())
    })?;
    let last_success = metric(
        &mut lab,
        &format!("gateway_feed_last_success_timestamp_seconds{{feed=\"{FEED}\"}}"),
    )?;
    ensure!(
        last_success > 1.7e9,
        "last success timestamp {last_success}"
    );
    let age = metric(
        &mut lab,
        &format!("gateway_feed_age_seconds{{feed=\"{FEED}\",kind=\"ip\"}}"),
    )?;
    ensure!(
        (0.0..60.0).contains(&age),
        "age since the good download: {age}"
    );
    let entries_series = format!("gateway_feed_entries{{feed=\"{FEED}\",kind=\"ip\"}}");
    ensure!(metric(&mut lab, &entries_series)? == 3.0, "entries metric");

    // 3. Every broken download keeps the list in force.
    let big = "203.0.113.1\n".repeat(400).into_bytes();
    let cases: Vec<(&str, Mode, &str)> = vec![
        (
            "connection cut mid-body",
            Mode::Cut {
                body: good_list(),
                at: 25,
            },
            "truncated",
        ),
        (
            "Content-Length mismatch",
            Mode::LengthMismatch {
                body: good_list(),
                claimed: 500,
            },
            "truncated",
        ),
        (
            "empty body",
            Mode::Serve {
                body: Vec::new(),
                etag: "\"e\"".into(),
            },
            "empty",
        ),
        ("HTTP 404", Mode::Status(404), "http_status"),
        ("HTTP 500", Mode::Status(500), "http_status"),
        (
            "malformed content",
            Mode::Serve {
                body: b"203.0.113.77\nnot-an-address\n".to_vec(),
                etag: "\"m\"".into(),
            },
            "malformed",
        ),
        (
            "over max_bytes",
            Mode::Serve {
                body: big,
                etag: "\"b\"".into(),
            },
            "too_large",
        ),
        ("unknown CA", Mode::UnknownCa { body: good_list() }, "tls"),
        ("server stalls", Mode::Stall, "timeout"),
    ];
    for (what, mode, reason) in cases {
        let before = failures(&mut lab, reason)?;
        let alerts_before = soc_feed_alerts(&mut lab, "failed")?.len();
        server.set(mode);
        hup(&lab)?;
        wait(
            &format!("{what}: failure counted"),
            Duration::from_secs(20),
            || Ok((failures(&mut lab, reason)? > before).then_some(())),
        )?;
        let row = feed_row(&mut lab)?;
        ensure!(row["entries"] == 3, "{what}: entries changed: {row}");
        ensure!(
            row["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("{reason}: "))),
            "{what}: status: {row}"
        );
        ensure!(
            metric(&mut lab, &entries_series)? == 3.0,
            "{what}: gateway_feed_entries changed"
        );
        ensure!(
            metric(
                &mut lab,
                &format!("gateway_feed_last_fetch_ok{{feed=\"{FEED}\"}}")
            )? == 0.0,
            "{what}: last_fetch_ok"
        );
        blocked(&mut lab).with_context(|| format!("after {what}"))?;
        let alert = wait(
            &format!("{what}: alert at the SOC"),
            Duration::from_secs(10),
            || {
                let got = soc_feed_alerts(&mut lab, "failed")?;
                Ok((got.len() > alerts_before).then(|| got[alerts_before..].to_vec()))
            },
        )?;
        ensure!(
            alert.iter().any(|a| {
                let sd = &a["rfc5424-sd"]["gateway-feed@32473"];
                sd["reason"] == reason
                    && sd["kept_entries"] == "3"
                    && sd["url"].as_str().is_some_and(|u| u.contains(FEED))
            }),
            "{what}: alerts {alert:?}"
        );
        eprintln!("{what}: refused as {reason}, list kept, alerted");
    }

    // 4. Restart with the vendor down: the last good copy is enforced.
    drop(server);
    lab.kill_gatewayd(libc::SIGTERM)?;
    lab.restart_gatewayd()?;
    let row = feed_row(&mut lab)?;
    ensure!(row["entries"] == 3, "after restart: {row}");
    blocked(&mut lab).context("after a restart with the feed server down")?;
    wait(
        "connect failure after restart",
        Duration::from_secs(20),
        || {
            Ok(feed_row(&mut lab)?["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("connect: "))
                .then_some(()))
        },
    )?;
    blocked(&mut lab)?;

    // 5. An apply over the management API reaches the SOC as an audit message.
    let policy_arg = policy.display().to_string();
    let out = Remote::new(certs.clone(), listen).run(&mut lab, "alice", &["apply", &policy_arg])?;
    ensure!(out.success(), "apply over the API: {out}");
    let audit = wait("audit message at the SOC", Duration::from_secs(10), || {
        let got = lab.soc().context("soc")?.alerts()?;
        Ok(got.into_iter().find(|a| {
            a["msgid"] == "audit"
                && a["rfc5424-sd"]["gateway-audit@32473"]["action"] == "policy.apply"
        }))
    })?;
    let sd = &audit["rfc5424-sd"]["gateway-audit@32473"];
    ensure!(
        sd["result"] == "ok"
            && sd["cn"] == "alice"
            && sd["role"] == "admin"
            && sd["subject"].as_str().is_some_and(|s| s.contains("alice")),
        "audit message: {audit}"
    );
    ensure!(audit["app"] == "gatewayd", "audit app-name: {audit}");
    blocked(&mut lab).context("after the API apply (the bundle carries the feed's CA)")?;
    lab.teardown()
}
