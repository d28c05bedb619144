//! Issue 4, item 5 with real traffic: gatewayd --nftables renders the ruleset from the policy and
//! applies it. lan -> internet is masqueraded (the internet server sees the gateway's address) and
//! replies come back; new connections from the internet side are dropped; the management API is
//! reachable from a management prefix on the lan, refused from a lan address outside it and from the
//! internet side; the SOC scrapes metrics from the dedicated side; a push that changes `[management]
//! prefixes` changes what is reachable; a push that locks the admin out is reverted by commit-confirm
//! and access comes back; after kill -9 the ruleset stays in the kernel, and a restart re-applies the
//! same one; `gatewayd --teardown --nftables` leaves the boot default deny. gatewayd also speaks
//! sd_notify to a NOTIFY_SOCKET the test binds (READY, WATCHDOG, STATUS, STOPPING).
//!
//! Needs root (namespaces, XDP, nftables), `nft` and `openssl`.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gateway_tests::lab::Side::{Client, Ded, Gw, Inet};
use gateway_tests::lab::addr::*;
use gateway_tests::lab::daemon::workspace_root;
use gateway_tests::lab::mtls::{API_PORT, Remote, api_args, mint};
use gateway_tests::lab::servers::UDP_ECHO_PORT;
use gateway_tests::lab::{EXAMPLE_POLICY, Findings, Lab, Proto};

/// The gateway's own addresses on the dedicated and internet links.
const GW_DED_V4: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const GW_INET_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// A lan host outside the example's management prefixes (10.10.0.0/28).
const OUTSIDE_MGMT_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);
const METRICS_PORT: u16 = 9100;

/// The example policy with its `[management]` section replaced, written (with the feeds it names)
/// under the lab's directory.
fn policy_with_management(
    lab: &Lab,
    name: &str,
    prefixes: &[&str],
    api_port: u16,
) -> Result<PathBuf> {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join(EXAMPLE_POLICY))?;
    let head = text
        .split("\n[management]")
        .next()
        .context("example policy")?;
    let list: Vec<String> = prefixes.iter().map(|p| format!("{p:?}")).collect();
    let dir = lab.run_dir().join("policies");
    std::fs::create_dir_all(&dir)?;
    let feeds = dir.join("feeds");
    if !feeds.exists() {
        std::os::unix::fs::symlink(root.join("configs/feeds"), &feeds)?;
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "{head}\n[management]\nprefixes = [{}]\napi_port = {api_port}\n",
            list.join(", ")
        ),
    )?;
    Ok(path)
}

fn utf8(p: &Path) -> Result<String> {
    Ok(p.to_str().context("UTF-8 path")?.to_owned())
}

/// Waits up to `within` for `probe` to be `want`.
fn eventually(
    within: Duration,
    want: bool,
    mut probe: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        if probe()? == want {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `nft list table inet gateway` in the gateway namespace (None: no such table).
fn table(lab: &Lab) -> Result<Option<String>> {
    match lab.run_in(Gw, "nft", &["list", "table", "inet", "gateway"]) {
        Ok(s) => Ok(Some(s)),
        Err(e) if format!("{e:#}").contains("No such file") => Ok(None),
        Err(e) => Err(e),
    }
}

/// systemd's side of sd_notify: a datagram socket read all the time (as systemd does: the daemon's
/// sends block once the socket's queue is full), collecting what gatewayd sent.
struct NotifySocket {
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(path: &Path) -> Result<NotifySocket> {
        let sock = UnixDatagram::bind(path)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        received
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(msg);
                    }
                }
            })
        };
        Ok(NotifySocket {
            received,
            stop,
            reader: Some(reader),
        })
    }

    /// What arrived since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.received.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn notifications(sock: &NotifySocket) -> Vec<String> {
    sock.take()
}

fn nft_status(lab: &mut Lab) -> Result<serde_json::Value> {
    let s: serde_json::Value = serde_json::from_str(&lab.ctl_ok(&["status", "--json"])?)?;
    ensure!(
        s["nftables"]["hash"].is_string(),
        "status shows no nftables ruleset: {s}"
    );
    Ok(s["nftables"].clone())
}

#[test]
fn nftables_masquerade_stateful_inbound_management_plane_and_commit_confirm() -> Result<()> {
    let mut lab = Lab::up()?;
    let certs = lab.run_dir().join("certs");
    std::fs::create_dir_all(&certs)?;
    mint(&certs)?;
    lab.ip(
        Client,
        &[
            "addr",
            "add",
            &format!("{OUTSIDE_MGMT_V4}/24"),
            "dev",
            "eth0",
        ],
    )?;
    // systemd's side of sd_notify: a datagram socket and a 1 s watchdog (pings every 0.5 s).
    let notify_path = lab.run_dir().join("notify.sock");
    let notify = NotifySocket::bind(&notify_path)?;
    lab.set_gatewayd_env(vec![
        ("NOTIFY_SOCKET".into(), notify_path.clone().into()),
        ("WATCHDOG_USEC".into(), "1000000".into()),
    ]);
    let (listen, mut args) = api_args(&certs);
    args.insert(0, "--nftables".into());
    lab.start_gatewayd_with(EXAMPLE_POLICY, &args)?;
    let api = Remote::new(certs.clone(), listen);
    let mut findings = Findings::default();

    // --- sd_notify: READY with a STATUS line, then watchdog pings -------------------------------
    std::thread::sleep(Duration::from_millis(1600));
    let sent = notifications(&notify);
    findings.check(
        sent.first()
            .is_some_and(|m| m.contains("READY=1") && m.contains("STATUS=enforcing ward-office")),
        || format!("first notification is not READY=1 with a status: {sent:?}"),
    );
    let pings = sent.iter().filter(|m| m.trim() == "WATCHDOG=1").count();
    findings.check(pings >= 2, || {
        format!("{pings} watchdog pings in 1.6 s with WATCHDOG_USEC=1s: {sent:?}")
    });

    let first = nft_status(&mut lab)?;
    let text = lab.ctl_ok(&["status"])?;
    findings.check(
        text.contains(&format!(
            "nftables    {} (ruleset 1 of this daemon",
            first["hash"].as_str().unwrap_or_default()
        )),
        || format!("`gatewayctl status` does not show the ruleset: {text}"),
    );
    findings.check(first["generation"] == 1, || {
        format!("the start ruleset is not generation 1: {first}")
    });

    // --- masquerade, replies, stateful inbound ------------------------------------------------------
    findings.check(lab.tcp(Client, CLIENT_V4, INET_SERVER_V4, 443)?, || {
        "lan -> internet TCP did not complete".into()
    });
    findings.check(
        lab.udp(Client, CLIENT_V4, INET_SERVER_V4, UDP_ECHO_PORT)?,
        || "lan -> internet UDP echo did not come back".into(),
    );
    let server = SocketAddr::new(INET_SERVER_V4.into(), 443);
    let masqueraded = lab.served(&[Inet], |h| {
        h.proto == Proto::Tcp && h.local == server && h.peer == IpAddr::from(GW_INET_V4)
    })?;
    let unmasked = lab.served(&[Inet], |h| h.peer == IpAddr::from(CLIENT_V4))?;
    findings.check(masqueraded >= 1 && unmasked == 0, || {
        format!("internet server saw the gateway {masqueraded} times, the client's own address {unmasked} times")
    });
    findings.check(!lab.tcp(Inet, INET_SERVER_V4, CLIENT_V4, 443)?, || {
        "a new connection from the internet reached the lan".into()
    });
    let inbound = lab.served(&[Client], |h| h.peer == IpAddr::from(INET_SERVER_V4))?;
    findings.check(inbound == 0, || {
        format!("lan servers accepted {inbound} connection(s) from the internet")
    });

    // --- the management plane ------------------------------------------------------------------------
    findings.check(lab.tcp(Client, CLIENT_V4, GW_LAN_V4, API_PORT)?, || {
        "API port not reachable from the admin (10.10.0.2, in the management prefixes)".into()
    });
    findings.record(api.ok(&mut lab, "alice", &["status"]));
    findings.check(
        !lab.tcp(Client, OUTSIDE_MGMT_V4, GW_LAN_V4, API_PORT)?,
        || "API port reachable from a lan address outside the management prefixes".into(),
    );
    findings.check(!lab.tcp(Inet, INET_LINK_V4, GW_LAN_V4, API_PORT)?, || {
        "API port reachable from the internet side".into()
    });
    findings.check(lab.tcp(Ded, DED_LINK_V4, GW_DED_V4, METRICS_PORT)?, || {
        "the SOC (172.16.0.2) cannot reach the metrics endpoint from the dedicated side".into()
    });
    findings.check(
        !lab.tcp(Inet, INET_LINK_V4, GW_DED_V4, METRICS_PORT)?,
        || "metrics reachable from the internet side".into(),
    );
    findings.check(
        !lab.tcp(Client, OUTSIDE_MGMT_V4, GW_DED_V4, METRICS_PORT)?,
        || "metrics reachable from a lan address outside the management prefixes".into(),
    );

    // --- a push that widens the prefixes opens the API to the new ones ---------------------------
    let wider = policy_with_management(
        &lab,
        "wider",
        &[
            "10.10.0.0/28",
            "10.10.0.96/28",
            "fd00:10::/124",
            "172.16.0.2/32",
        ],
        API_PORT,
    )?;
    let pushed = api.ok(&mut lab, "alice", &["apply", &utf8(&wider)?])?;
    findings.check(pushed.contains("+ prefix 10.10.0.96/28"), || {
        format!("the apply report does not show the management diff: {pushed}")
    });
    let widened = nft_status(&mut lab)?;
    findings.check(widened["hash"] != first["hash"], || {
        "the ruleset hash did not change with the management prefixes".into()
    });
    findings.check(
        lab.tcp(Client, OUTSIDE_MGMT_V4, GW_LAN_V4, API_PORT)?,
        || "API port not reachable from 10.10.0.100 after adding 10.10.0.96/28".into(),
    );
    // systemd's STATUS= follows applies made through the API (refreshed by the main loop's tick).
    let short = widened["hash"].as_str().unwrap_or_default()[..12].to_owned();
    let mut seen = Vec::new();
    let shown = eventually(Duration::from_secs(5), true, || {
        seen.extend(notifications(&notify));
        Ok(seen
            .iter()
            .any(|m| m.starts_with("STATUS=") && m.contains(&short)))
    })?;
    findings.check(shown, || {
        format!("no STATUS= with the new ruleset {short} after the push: {seen:?}")
    });
    let (_, wider_hash, _) = api.in_force(&mut lab, "alice")?;

    // --- a push that locks the admin out is reverted by commit-confirm ---------------------------
    // --- a policy opening another port than the API's is refused before anything changes -------
    let wrong_port = policy_with_management(
        &lab,
        "wrong-port",
        &["10.10.0.0/28", "172.16.0.2/32"],
        API_PORT + 1,
    )?;
    let refused = api.run(&mut lab, "alice", &["apply", &utf8(&wrong_port)?])?;
    findings.check(
        !refused.success() && refused.stderr.contains("management.api_port"),
        || format!("a policy with another API port was not refused by field: {refused}"),
    );
    findings.check(nft_status(&mut lab)?["hash"] == widened["hash"], || {
        "the refused policy changed the ruleset".into()
    });

    let lockout = policy_with_management(
        &lab,
        "lockout",
        &["10.10.0.96/28", "172.16.0.2/32"],
        API_PORT,
    )?;
    api.ok(
        &mut lab,
        "alice",
        &["apply", &utf8(&lockout)?, "--confirm-within", "5"],
    )?;
    findings.check(!lab.tcp(Client, CLIENT_V4, GW_LAN_V4, API_PORT)?, || {
        "the lock-out policy did not close the API to the admin".into()
    });
    let back = eventually(Duration::from_secs(60), true, || {
        lab.tcp(Client, CLIENT_V4, GW_LAN_V4, API_PORT)
    })?;
    findings.check(back, || {
        "the admin's access did not come back within 60 s (commit-confirm revert)".into()
    });
    if back {
        let (_, hash, pending) = api.in_force(&mut lab, "alice")?;
        findings.check(hash == wider_hash && !pending, || {
            format!("after the revert the bundle in force is {hash} (pending {pending}), not {wider_hash}")
        });
        let reverted = nft_status(&mut lab)?;
        findings.check(reverted["hash"] == widened["hash"], || {
            format!("after the revert the ruleset is {reverted}, not {widened}")
        });
    }

    // --- kill -9: the ruleset stays in the kernel; a restart re-applies the same one -------------
    let before_kill = table(&lab)?.context("no table inet gateway before kill -9")?;
    let in_force = nft_status(&mut lab)?;
    lab.kill_gatewayd(libc::SIGKILL)?;
    let after_kill = table(&lab)?;
    findings.check(after_kill.as_deref() == Some(before_kill.as_str()), || {
        "table inet gateway changed or vanished when gatewayd was killed".into()
    });
    findings.check(!lab.tcp(Inet, INET_SERVER_V4, CLIENT_V4, 443)?, || {
        "with gatewayd dead, a new connection from the internet reached the lan".into()
    });
    findings.check(lab.tcp(Client, CLIENT_V4, INET_SERVER_V4, 80)?, || {
        "with gatewayd dead, lan -> internet stopped".into()
    });
    let _ = notifications(&notify);
    lab.restart_gatewayd()?;
    let restarted = nft_status(&mut lab)?;
    findings.check(restarted["hash"] == in_force["hash"], || {
        format!("the restarted daemon applied another ruleset: {restarted} vs {in_force}")
    });

    // --- SIGTERM says STOPPING; teardown leaves the boot default deny ----------------------------
    lab.kill_gatewayd(libc::SIGTERM)?;
    let sent = notifications(&notify);
    findings.check(sent.iter().any(|m| m.contains("STOPPING=1")), || {
        format!("no STOPPING=1 on SIGTERM: {sent:?}")
    });
    let gatewayd = lab.binaries()?.gatewayd.clone();
    let pin_dir = utf8(lab.pin_dir())?;
    lab.run_in(
        Gw,
        &utf8(&gatewayd)?,
        &["--teardown", "--nftables", "--pin-dir", &pin_dir],
    )?;
    let boot = table(&lab)?.unwrap_or_default();
    findings.check(
        boot.contains("policy drop") && !boot.contains("masquerade"),
        || format!("after teardown the table is not the boot default deny:\n{boot}"),
    );
    findings.check(!lab.tcp(Client, CLIENT_V4, INET_SERVER_V4, 443)?, || {
        "after teardown lan -> internet is still forwarded (open box)".into()
    });
    if let Err(e) = findings.finish() {
        bail!("{e:#}\ngatewayd log:\n{}", lab.gatewayd_log());
    }
    lab.teardown()
}

/// An `nft` in front of the real one that refuses on demand: `fail` holding `apply` refuses commits
/// only (what `nft --check` cannot foresee), `all` refuses checks too. gatewayd finds it first in PATH.
fn failing_nft(dir: &Path) -> Result<PathBuf> {
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("nft not installed (apt-get install nftables)")?;
    let fail = dir.join("fail");
    let script = format!(
        "#!/bin/sh\n\
         mode=$(cat {fail} 2>/dev/null)\n\
         if [ \"$mode\" = all ] || {{ [ \"$mode\" = apply ] && [ \"$1\" != --check ]; }}; then\n\
         \x20 echo 'Error: injected by the test' >&2; exit 1\n\
         fi\n\
         exec {real} \"$@\"\n",
        fail = fail.display()
    );
    let nft = dir.join("nft");
    std::fs::write(&nft, script)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755))?;
    Ok(fail)
}

#[test]
fn a_refused_ruleset_leaves_xdp_and_nftables_on_the_same_policy() -> Result<()> {
    let mut lab = Lab::up()?;
    let bin = lab.run_dir().join("bin");
    std::fs::create_dir_all(&bin)?;
    let fail = failing_nft(&bin)?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut search = OsString::from(bin.as_os_str());
    search.push(":");
    search.push(path);
    lab.set_gatewayd_env(vec![("PATH".into(), search)]);
    lab.start_gatewayd_with(EXAMPLE_POLICY, &["--nftables".into()])?;
    let start = lab.status()?;
    let start_nft = nft_status(&mut lab)?;
    let mut findings = Findings::default();

    // Refused at check time: nothing is touched.
    std::fs::write(&fail, "all")?;
    let out = lab.apply(gateway_tests::lab::ALT_POLICY)?;
    findings.check(
        !out.success()
            && out
                .stderr
                .contains("nftables refused the ruleset; nothing was changed"),
        || format!("check-time refusal not reported as such: {out}"),
    );
    findings.check(out.stderr.contains("injected by the test"), || {
        format!("the error does not carry nft's own message: {out}")
    });
    let now = lab.status()?;
    findings.check(
        now.image_hash == start.image_hash && now.generation == start.generation,
        || format!("a check-time refusal changed the data path: {now:?}"),
    );

    // Refused at commit time, after the XDP swap: the previous image is swapped back.
    std::fs::write(&fail, "apply")?;
    let out = lab.apply(gateway_tests::lab::ALT_POLICY)?;
    findings.check(
        !out.success()
            && out
                .stderr
                .contains("the previous policy was put back in the data path as generation"),
        || format!("commit-time refusal not reported with the swap-back: {out}"),
    );
    let now = lab.status()?;
    findings.check(now.image_hash == start.image_hash, || {
        format!(
            "after the refused ruleset XDP enforces {} instead of {}",
            now.image_hash, start.image_hash
        )
    });
    findings.check(now.generation == start.generation + 2, || {
        format!(
            "generation {} -> {}: expected the swap and the swap back",
            start.generation, now.generation
        )
    });
    let nft_now = nft_status(&mut lab)?;
    findings.check(nft_now["hash"] == start_nft["hash"], || {
        format!("the ruleset changed although nft refused it: {nft_now}")
    });
    findings.record(lab.expect_dropped(
        gateway_tests::lab::Side::Client,
        CLIENT_V4,
        BLOCKED_V4,
        gateway_tests::lab::Probe::Ping,
        gateway_common::Role::Lan,
        gateway_common::Reason::Blocklist,
    ));

    // nft works again: the same apply goes through, both move together.
    std::fs::remove_file(&fail)?;
    let out = lab.apply(gateway_tests::lab::ALT_POLICY)?;
    findings.check(out.success(), || {
        format!("apply after nft recovered: {out}")
    });
    let nft_after = nft_status(&mut lab)?;
    findings.check(
        nft_after["policy_generation"] == lab.status()?.generation,
        || format!("ruleset {nft_after} not applied with the data path's generation"),
    );
    if let Err(e) = findings.finish() {
        bail!("{e:#}\ngatewayd log:\n{}", lab.gatewayd_log());
    }
    lab.teardown()
}
