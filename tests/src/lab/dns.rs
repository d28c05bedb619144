//! Real DNS in the lab: a resolver on the Internet side (`dnsmasq`, serving fixed records) and
//! `dig` from the office side, the tools an admin would use to see what the gateway does to DNS.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Lab, Side, addr, netns};

/// Names the resolver answers (A `203.0.113.10`, AAAA `2001:db8:200::10`): the lab's domain feed
/// (`configs/feeds/soc-domains.txt`) lists some of them, so a blocked query and one that got
/// through are told apart by the answer.
pub const RESOLVER_NAMES: [&str; 6] = [
    "good.example.net",
    "evil.example.net",
    "www.evil.example.net",
    "phish.example.org",
    "login-update.example.org",
    "27lelchgcvs2wpm7.3lhjyx.top",
];

/// A `dnsmasq` on the Internet server's addresses (`203.0.113.10`, `2001:db8:200::10`), UDP and
/// TCP port 53; every query it receives is logged to `queries.log` in the lab's run directory.
/// Killed (by its pid) when dropped.
pub struct Resolver {
    child: Child,
    log: PathBuf,
}

impl Resolver {
    pub fn start(lab: &Lab) -> Result<Resolver> {
        let log = lab.run_dir().join("dnsmasq-queries.log");
        let mut cmd = netns::exec_in(&lab.ns(Side::Inet), "dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=203.0.113.10",
            "--listen-address=2001:db8:200::10",
            "--user=root",
            "--pid-file",
            "--local-ttl=300",
            "--log-queries",
        ])
        .arg(format!("--log-facility={}", log.display()));
        for name in RESOLVER_NAMES {
            cmd.arg(format!(
                "--host-record={name},203.0.113.10,2001:db8:200::10"
            ));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting dnsmasq (Debian package dnsmasq-base, installed by scripts/setup.sh)",
            )?;
        let mut r = Resolver { child, log };
        // Ready once it answers over both families.
        let deadline = Instant::now() + Duration::from_secs(10);
        for server in ["203.0.113.10", "2001:db8:200::10"] {
            let server: IpAddr = server.parse()?;
            loop {
                if let Some(status) = r.child.try_wait()? {
                    bail!("dnsmasq exited at start: {status}");
                }
                let a = dig(lab, server, "good.example.net", "A", false)?;
                if a.status.as_deref() == Some("NOERROR") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("dnsmasq does not answer on {server}: {a:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(r)
    }

    /// The queries the resolver has logged so far.
    pub fn log(&self) -> Result<String> {
        std::fs::read_to_string(&self.log).with_context(|| format!("{}", self.log.display()))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// What `dig` got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigAnswer {
    /// The response's RCODE word (`NOERROR`, `NXDOMAIN`, …); `None` when no response arrived.
    pub status: Option<String>,
    /// Answer records: (name, TTL, type, data).
    pub answers: Vec<(String, u32, String, String)>,
    /// dig's whole output, for failure messages.
    pub output: String,
}

/// `dig @server name qtype` from the office client (10.10.0.2 / fd00:10::2, named with `-b`: the
/// client namespace also holds the isolated host's addresses), one try of 2 s, over TCP when `tcp`.
pub fn dig(lab: &Lab, server: IpAddr, name: &str, qtype: &str, tcp: bool) -> Result<DigAnswer> {
    let source: IpAddr = match server {
        IpAddr::V4(_) => addr::CLIENT_V4.into(),
        IpAddr::V6(_) => addr::CLIENT_V6.into(),
    };
    let mut cmd = netns::exec_in(&lab.ns(Side::Client), "dig");
    cmd.arg(format!("@{server}"))
        .args(["-b", &source.to_string()])
        .args([
            name,
            qtype,
            "+time=2",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
        ]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running dig (Debian package bind9-dnsutils, installed by scripts/setup.sh)")?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = output
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .map(str::to_owned);
    let answers = output
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [name, ttl, _class, rtype, data, ..] => Some((
                    (*name).to_owned(),
                    ttl.parse().ok()?,
                    (*rtype).to_owned(),
                    (*data).to_owned(),
                )),
                _ => None,
            }
        })
        .collect();
    Ok(DigAnswer {
        status,
        answers,
        output,
    })
}
