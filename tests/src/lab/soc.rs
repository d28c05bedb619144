//! The SOC of the lab, on the dedicated network (the provincial SOC is reached over it): the real
//! tools a SOC points at a gateway, run inside the `ded` namespace on the dedicated router's address
//! 172.16.0.2, the collector addresses of configs/ward-office.toml:
//! - `nfcapd` (nfdump 1.7) on UDP 4739 for IPFIX and on UDP 2055 for NetFlow v9;
//! - `rsyslogd` with imtcp on TCP 6514, writing every alert as a JSON line (RFC 5424 header fields
//!   and the structured data as rsyslog's mmpstrucdata parsed it);
//! - `curl` to scrape the gateway's metrics endpoint (172.16.0.1:9100) and `promtool` to check it.
//!
//! Each process is started by us, in the namespace, and stopped by its pid.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::netns;

/// Where the SOC listens (the lab's dedicated router).
pub const SOC_ADDR: &str = "172.16.0.2";
pub const IPFIX_PORT: u16 = 4739;
pub const NETFLOW9_PORT: u16 = 2055;
pub const SYSLOG_PORT: u16 = 6514;
/// The gateway's metrics endpoint as the SOC reaches it.
pub const METRICS_URL: &str = "http://172.16.0.1:9100/metrics";

/// Debian packages behind the SOC's tools (installed by scripts/setup.sh).
const PACKAGES: &str = "nfdump rsyslog prometheus curl";

/// Which flow collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collector {
    Ipfix,
    Netflow9,
}

impl Collector {
    fn port(self) -> u16 {
        match self {
            Collector::Ipfix => IPFIX_PORT,
            Collector::Netflow9 => NETFLOW9_PORT,
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Collector::Ipfix => "ipfix",
            Collector::Netflow9 => "netflow9",
        }
    }
}

/// A flow as nfdump prints it (`-o json`), with the fields the lab checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NfFlow {
    pub src: String,
    pub dst: String,
    pub proto: u64,
    pub sport: u64,
    pub dport: u64,
    pub packets: u64,
    pub bytes: u64,
    /// forwardingStatus (IE 89): 64.. forwarded, 128.. dropped.
    pub fwd_status: u64,
    /// nfdump's firewall event word ("DENIED" for drops), when present.
    pub event: Option<String>,
    pub raw: serde_json::Value,
}

impl NfFlow {
    fn from_json(v: serde_json::Value) -> NfFlow {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        NfFlow {
            src: s("src4_addr")
                .or_else(|| s("src6_addr"))
                .unwrap_or_default(),
            dst: s("dst4_addr")
                .or_else(|| s("dst6_addr"))
                .unwrap_or_default(),
            proto: n("proto"),
            sport: n("src_port"),
            dport: n("dst_port"),
            packets: n("in_packets"),
            bytes: n("in_bytes"),
            fwd_status: n("fwd_status"),
            event: s("event"),
            raw: v,
        }
    }

    pub fn dropped(&self) -> bool {
        self.fwd_status >> 6 == 2
    }
}

struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not stop within 20 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The running SOC tools of one lab.
pub struct Soc {
    ns: String,
    dir: PathBuf,
    ipfix: Option<Process>,
    netflow9: Option<Process>,
    syslog: Option<Process>,
}

fn tool(path_candidates: &[&str], name: &str) -> Result<PathBuf> {
    path_candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "{name} is missing: the lab's SOC needs it (apt-get install -y --no-install-recommends {PACKAGES}; scripts/setup.sh does)"
            )
        })
}

fn spawn(
    ns: &str,
    name: &'static str,
    program: &Path,
    args: &[String],
    log: PathBuf,
) -> Result<Process> {
    let out = std::fs::File::create(&log).with_context(|| log.display().to_string())?;
    let mut cmd = netns::exec_in(ns, program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; if the lab dies, its SOC goes too.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    Ok(Process { name, child, log })
}

impl Soc {
    /// Starts the collectors and the syslog receiver in namespace `ns`, files under `dir`.
    pub fn start(ns: &str, dir: &Path) -> Result<Soc> {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        let mut soc = Soc {
            ns: ns.to_owned(),
            dir: dir.to_owned(),
            ipfix: None,
            netflow9: None,
            syslog: None,
        };
        soc.ipfix = Some(soc.start_nfcapd(Collector::Ipfix)?);
        soc.netflow9 = Some(soc.start_nfcapd(Collector::Netflow9)?);
        soc.syslog = Some(soc.start_rsyslog()?);
        soc.wait_listening()?;
        Ok(soc)
    }

    fn start_nfcapd(&self, c: Collector) -> Result<Process> {
        let nfcapd = tool(&["/usr/bin/nfcapd"], "nfcapd")?;
        let flows = self.dir.join(c.dir_name());
        std::fs::create_dir_all(&flows)?;
        let args = vec![
            "-b".into(),
            SOC_ADDR.into(),
            "-p".into(),
            c.port().to_string(),
            "-t".into(),
            "3600".into(),
            "-w".into(),
            flows.display().to_string(),
        ];
        spawn(
            &self.ns,
            "nfcapd",
            &nfcapd,
            &args,
            self.dir.join(format!("nfcapd-{}.log", c.dir_name())),
        )
    }

    fn start_rsyslog(&self) -> Result<Process> {
        let rsyslogd = tool(&["/usr/sbin/rsyslogd", "/sbin/rsyslogd"], "rsyslogd")?;
        let work = self.dir.join("rsyslog-work");
        std::fs::create_dir_all(&work)?;
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imtcp")
module(load="mmpstrucdata")
template(name="json" type="string" string="%$!%\n")
ruleset(name="soc") {{
  action(type="mmpstrucdata")
  set $!msgid = $msgid;
  set $!hostname = $hostname;
  set $!app = $app-name;
  set $!pri = $pri;
  set $!msg = $msg;
  action(type="omfile" file="{out}" template="json")
}}
input(type="imtcp" address="{SOC_ADDR}" port="{SYSLOG_PORT}" ruleset="soc")
"#,
                work = work.display(),
                out = self.alerts_file().display(),
            ),
        )?;
        let args = vec![
            "-n".into(),
            "-f".into(),
            conf.display().to_string(),
            "-i".into(),
            self.dir.join("rsyslogd.pid").display().to_string(),
        ];
        spawn(
            &self.ns,
            "rsyslogd",
            &rsyslogd,
            &args,
            self.dir.join("rsyslogd.log"),
        )
    }

    fn alerts_file(&self) -> PathBuf {
        self.dir.join("alerts.jsonl")
    }

    /// Waits until rsyslogd accepts connections and both nfcapd have their sockets bound.
    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for p in [&mut self.ipfix, &mut self.netflow9, &mut self.syslog]
                .into_iter()
                .flatten()
            {
                if let Some(status) = p.child.try_wait()? {
                    bail!("{} exited at start ({status}):\n{}", p.name, p.log_text());
                }
            }
            let ss = netns::output_in(&self.ns, "ss", &["-Hlnu"])?
                + &netns::output_in(&self.ns, "ss", &["-Hlnt"])?;
            let listening = |port: u16| ss.contains(&format!("{SOC_ADDR}:{port}"));
            if listening(IPFIX_PORT) && listening(NETFLOW9_PORT) && listening(SYSLOG_PORT) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the SOC tools did not start listening within 30 s:\n{ss}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops `c`'s nfcapd (it writes its file on SIGTERM) and returns every flow it stored, as
    /// nfdump prints them. The collector is then restarted, so later flows are collected too.
    pub fn flows(&mut self, c: Collector) -> Result<Vec<NfFlow>> {
        let slot = match c {
            Collector::Ipfix => &mut self.ipfix,
            Collector::Netflow9 => &mut self.netflow9,
        };
        if let Some(p) = slot.take() {
            p.stop()?;
        }
        let dir = self.dir.join(c.dir_name());
        let out = Command::new("nfdump")
            .env("TZ", "UTC")
            .arg("-R")
            .arg(&dir)
            .args(["-o", "json"])
            .output()
            .context("running nfdump")?;
        let restarted = self.start_nfcapd(c)?;
        match c {
            Collector::Ipfix => self.ipfix = Some(restarted),
            Collector::Netflow9 => self.netflow9 = Some(restarted),
        }
        if !out.status.success() {
            bail!(
                "nfdump -R {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("nfdump's JSON does not parse:\n{text}"))?;
        Ok(match v {
            serde_json::Value::Array(list) => list.into_iter().map(NfFlow::from_json).collect(),
            other => vec![NfFlow::from_json(other)],
        })
    }

    /// The alerts the syslog receiver wrote so far.
    pub fn alerts(&self) -> Result<Vec<serde_json::Value>> {
        let text = match std::fs::read_to_string(self.alerts_file()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("rsyslog wrote {l:?}")))
            .collect()
    }

    /// Polls [`Soc::alerts`] until `pred` holds (at most `limit`).
    pub fn wait_alerts(
        &self,
        limit: Duration,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.alerts()?;
            if pred(&got) {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!(
                    "the syslog receiver did not get the expected alerts within {limit:?}; it has {} alert(s); rsyslogd said:\n{}",
                    got.len(),
                    self.syslog
                        .as_ref()
                        .map(Process::log_text)
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `curl` the gateway's metrics endpoint from the SOC's namespace.
    pub fn scrape(&self) -> Result<String> {
        netns::output_in(
            &self.ns,
            "curl",
            &["-sS", "--fail", "--max-time", "10", METRICS_URL],
        )
        .context("scraping the gateway's metrics from the SOC")
    }

    /// `promtool check metrics` on an exposition: Ok(()) or its complaints.
    pub fn promtool_check(exposition: &str) -> Result<()> {
        use std::io::Write as _;
        let promtool = tool(&["/usr/bin/promtool"], "promtool")?;
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("promtool stdin")?
            .write_all(exposition.as_bytes())?;
        let out = child.wait_with_output()?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || !said.trim().is_empty() {
            bail!("promtool check metrics refused the exposition:\n{said}");
        }
        Ok(())
    }

    /// Stops every tool (also done on drop).
    pub fn stop(mut self) -> Result<()> {
        for p in [self.ipfix.take(), self.netflow9.take(), self.syslog.take()]
            .into_iter()
            .flatten()
        {
            p.stop()?;
        }
        Ok(())
    }
}
