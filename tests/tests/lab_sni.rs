//! Issue 6 item 3 with real clients: a client that has an address for a blocked name without asking
//! the gateway's DNS inspection is still stopped. Needs root, gatewayd, gatewayctl, openssl, curl and
//! dig.
//!
//! 1. Learnt addresses: with a policy that lists no names, the client asks a resolver on the
//!    Internet side for `www.learnt.example` (real `dig`). While the resolver holds its answer, the
//!    domain policy is applied; the answer (A = the Internet server, TTL 8 s) then reaches the
//!    gateway for a name now blocked: it is dropped and the address learnt. A real TCP connect to the
//!    Internet server is dropped as `domain` while the entry lives, `gatewayctl domains learnt`
//!    shows it, and after the TTL the server is reachable again.
//! 2. SNI: `curl --resolve blocked.example:4433:<server>` against a real `openssl s_server` is
//!    stopped by its ClientHello, while `allowed.example` to the same server and port works.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use gateway_common::{Reason, Role};
use gateway_tests::lab::Side::{Client, Inet};
use gateway_tests::lab::{Lab, addr::*};
use gateway_tests::testnet::TestNet;

const NO_NAMES: &str = "tests/lab/ward-office-alt.toml";
const DOMAINS: &str = "tests/lab/ward-office-domains.toml";
const TLS_PORT: u16 = 4433;
const ANSWER_TTL: u32 = 8;

/// A process this test started, killed by its pid when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A resolver in the Internet namespace that answers one A query with `INET_SERVER_V4`, but only
/// once the test says so (the policy changes in between). Reports the question it got.
fn slow_resolver(ns: String, go: mpsc::Receiver<()>, got: mpsc::Sender<String>) -> Result<()> {
    TestNet::enter_by_name(&ns)?;
    let sock = UdpSocket::bind(SocketAddr::new(INET_SERVER_V4.into(), 53))?;
    sock.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut buf = [0u8; 512];
    let (n, from) = sock
        .recv_from(&mut buf)
        .context("no query reached the resolver")?;
    ensure!(n > 12, "short query");
    // The question: labels to the root byte, then QTYPE and QCLASS.
    let mut end = 12;
    while end < n && buf[end] != 0 {
        end += 1 + buf[end] as usize;
    }
    let qend = end + 1 + 4;
    ensure!(qend <= n, "query without a whole question");
    let mut name = Vec::new();
    let mut i = 12;
    while buf[i] != 0 {
        name.push(String::from_utf8_lossy(&buf[i + 1..i + 1 + buf[i] as usize]).into_owned());
        i += 1 + buf[i] as usize;
    }
    let _ = got.send(name.join("."));
    go.recv_timeout(Duration::from_secs(15))
        .context("the test never released the answer")?;
    let mut r = Vec::with_capacity(qend + 16);
    r.extend_from_slice(&buf[..2]); // id
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&buf[12..qend]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    r.extend_from_slice(&ANSWER_TTL.to_be_bytes());
    r.extend_from_slice(&[0, 4]);
    r.extend_from_slice(&INET_SERVER_V4.octets());
    sock.send_to(&r, from)?;
    Ok(())
}

/// `curl` in the client namespace: the HTTP status, or `None` when the connection failed.
fn curl(lab: &Lab, name: &str) -> Result<Option<u16>> {
    let out = lab
        .command_in(Client, "curl")
        .args([
            "-sk",
            "--max-time",
            "4",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
            &format!("{name}:{TLS_PORT}:{INET_SERVER_V4}"),
            &format!("https://{name}:{TLS_PORT}/"),
        ])
        .output()
        .context("running curl")?;
    let code: u16 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Ok(if out.status.success() && code != 0 {
        Some(code)
    } else {
        None
    })
}

/// A self-signed certificate and `openssl s_server -www` on `TLS_PORT` in the Internet namespace.
fn tls_server(lab: &Lab, dir: &Path) -> Result<Started> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", "/CN=lab-tls", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("openssl req")?;
    ensure!(st.success(), "openssl req failed");
    let child = lab
        .command_in(Inet, "openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &TLS_PORT.to_string(),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("openssl s_server")?;
    let server = Started(child);
    // Ready when a plain TCP connect succeeds (no policy blocks the server yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.tcp(Client, CLIENT_V4, INET_SERVER_V4, TLS_PORT)? {
        if Instant::now() > deadline {
            bail!("openssl s_server did not come up on {TLS_PORT}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

#[test]
fn clients_that_bypass_dns_inspection_are_stopped() -> Result<()> {
    let mut lab = Lab::with_gatewayd(NO_NAMES)?;
    let dir = lab.run_dir().join("sni");
    std::fs::create_dir_all(&dir)?;
    let _server = tls_server(&lab, &dir)?;

    // 1. An answer that arrives after its name became blocked.
    let (go_tx, go_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel();
    let ns = lab.ns(Inet);
    let resolver = std::thread::spawn(move || slow_resolver(ns, go_rx, got_tx));
    let dig = lab
        .command_in(Client, "dig")
        .args([
            &format!("@{INET_SERVER_V4}"),
            "+tries=1",
            "+time=3",
            "www.learnt.example",
            "A",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("dig")?;
    let dig = Started(dig);
    let asked = got_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the query never reached the resolver")?;
    ensure!(asked == "www.learnt.example", "resolver was asked {asked}");
    let answers_dropped = lab.counter(Role::Internet, Reason::Domain)?;
    let applied = lab.apply(DOMAINS)?;
    ensure!(applied.success(), "apply {DOMAINS}: {applied}");
    go_tx.send(()).ok();
    resolver
        .join()
        .map_err(|_| anyhow::anyhow!("resolver thread panicked"))??;
    let learnt_at = Instant::now();
    std::thread::sleep(Duration::from_millis(300)); // the answer crosses the gateway
    let dropped = lab.counter(Role::Internet, Reason::Domain)? - answers_dropped;
    ensure!(
        dropped == 1,
        "{dropped} answers dropped as internet/domain, want 1"
    );

    let listed = lab.ctl_ok(&["domains", "learnt"])?;
    ensure!(
        listed.contains(&INET_SERVER_V4.to_string()) && listed.contains("lab-domains"),
        "gatewayctl domains learnt:\n{listed}"
    );
    let before = lab.counter(Role::Lan, Reason::Domain)?;
    ensure!(
        !lab.tcp(Client, CLIENT_V4, INET_SERVER_V4, TLS_PORT)?,
        "a TCP connect to the learnt address went through"
    );
    let hits = lab.counter(Role::Lan, Reason::Domain)? - before;
    ensure!(hits >= 1, "no lan/domain drop for the learnt address");
    // The IPv6 address was not answered: it stays reachable.
    ensure!(
        lab.tcp(Client, CLIENT_V6, INET_SERVER_V6, TLS_PORT)?,
        "the server's IPv6 address (never answered) was blocked"
    );
    // dig never saw the answer (it times out).
    let mut dig = dig;
    dig.0.wait()?;
    let mut out = String::new();
    if let Some(mut stdout) = dig.0.stdout.take() {
        use std::io::Read as _;
        stdout.read_to_string(&mut out)?;
    }
    ensure!(
        !out.contains("ANSWER: 1"),
        "dig got the answer for a blocked name:\n{out}"
    );
    // After the TTL the entry is gone and the server reachable again.
    let expiry = Duration::from_secs(u64::from(ANSWER_TTL)) + Duration::from_millis(500);
    if let Some(left) = expiry.checked_sub(learnt_at.elapsed()) {
        std::thread::sleep(left);
    }
    ensure!(
        lab.tcp(Client, CLIENT_V4, INET_SERVER_V4, TLS_PORT)?,
        "the server is still blocked after the learnt entry expired"
    );

    // 2. SNI against a real TLS server.
    let before = lab.counter(Role::Lan, Reason::Domain)?;
    let allowed = curl(&lab, "allowed.example")?;
    ensure!(allowed == Some(200), "allowed.example: {allowed:?}");
    let blocked = curl(&lab, "www.blocked.example")?;
    ensure!(
        blocked.is_none(),
        "www.blocked.example got HTTP {blocked:?}"
    );
    let sni_drops = lab.counter(Role::Lan, Reason::Domain)? - before;
    ensure!(
        sni_drops >= 1,
        "no lan/domain drop for the blocked ClientHello"
    );
    // Its alert names the server_name, the listed name and the feed, like a DNS query's.
    let want = format!(
        "blocked TLS ClientHello for www.blocked.example (matched *.blocked.example, domain_feed:lab-domains) from {CLIENT_V4}:"
    );
    lab.wait_for_alert(&format!("starting {want:?}"), |v| {
        v["reason"] == "domain"
            && v["domain"] == "www.blocked.example"
            && v["domain_via"] == "tls_sni"
            && v["message"].as_str().is_some_and(|m| m.starts_with(&want))
    })?;
    // The block is of that ClientHello only, not of the address (openssl s_server serves one
    // connection at a time and still waits on the blocked one, so a bare handshake shows it).
    ensure!(
        lab.tcp(Client, CLIENT_V4, INET_SERVER_V4, TLS_PORT)?,
        "the TLS server's address is blocked after an SNI drop"
    );

    let listed = lab.ctl_ok(&["domains", "learnt"])?;
    for counter in ["sni_blocked", "learn_inserts", "learn_hits"] {
        ensure!(
            listed
                .lines()
                .any(|l| l.starts_with(counter) && !l.trim_end().ends_with(" 0")),
            "{counter} is zero:\n{listed}"
        );
    }
    drop(_server);
    lab.teardown()
}
