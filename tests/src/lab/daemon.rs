//! Driving gatewayd and gatewayctl (the contract in the daemon's README / cli-contract): locating the
//! binaries, starting the daemon inside the gateway namespace, its control socket, `status` and `stats`.
//!
//! Binaries are found, in this order:
//! 1. the `GATEWAYD` / `GATEWAYCTL` environment variables (paths to the executables);
//! 2. next to the running executable's target directory (`target/<profile>/gatewayd` for a test binary
//!    in `target/<profile>/deps/`, or for `target/<profile>/gateway-lab`);
//! 3. `<workspace>/target/release/`, then `<workspace>/target/debug/`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gateway_common::{Reason, Role};
use serde::Deserialize;

use super::netns;

/// How long gatewayd may take from exec to answering `gatewayctl status`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root (for hw/, configs/, tests/lab/). `GATEWAY_SRC` overrides the path compiled in.
pub fn workspace_root() -> PathBuf {
    match std::env::var_os("GATEWAY_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    }
}

#[derive(Clone, Debug)]
pub struct Binaries {
    pub gatewayd: PathBuf,
    pub gatewayctl: PathBuf,
}

impl Binaries {
    pub fn locate() -> Result<Binaries> {
        Ok(Binaries {
            gatewayd: locate("GATEWAYD", "gatewayd")?,
            gatewayctl: locate("GATEWAYCTL", "gatewayctl")?,
        })
    }
}

fn locate(var: &str, name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{var}={} does not name a file", path.display());
        }
        return Ok(path);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(mut dir) = exe.parent().map(Path::to_path_buf)
    {
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        candidates.push(dir.join(name));
    }
    let root = workspace_root();
    candidates.push(root.join("target/release").join(name));
    candidates.push(root.join("target/debug").join(name));
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "{name} not found: set {var}, or build it with `cargo build --release -p gateway-daemon`. Looked at: {}",
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Where one lab's daemon keeps its things (all under /run/gwlab-<id>/).
#[derive(Clone, Debug)]
pub struct DaemonPaths {
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
}

impl DaemonPaths {
    pub fn under(run_dir: &Path) -> DaemonPaths {
        DaemonPaths {
            pin_dir: run_dir.join("bpf"),
            state_dir: run_dir.join("state"),
            socket: run_dir.join("ctl.sock"),
            log: run_dir.join("gatewayd.log"),
            pid_file: run_dir.join("gatewayd.pid"),
        }
    }
}

/// A running gatewayd (the `ip netns exec` process execs it, so the child's pid is gatewayd's).
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts gatewayd in namespace `ns` with stdout and stderr appended to the log, and waits until
    /// `gatewayctl status` answers.
    pub fn start(
        bins: &Binaries,
        paths: &DaemonPaths,
        ns: &str,
        profile: &Path,
        policy: &Path,
    ) -> Result<Daemon> {
        Daemon::start_with(bins, paths, ns, profile, policy, &[])
    }

    /// [`Daemon::start`] with more arguments for gatewayd (e.g. the management API's).
    pub fn start_with(
        bins: &Binaries,
        paths: &DaemonPaths,
        ns: &str,
        profile: &Path,
        policy: &Path,
        extra: &[std::ffi::OsString],
    ) -> Result<Daemon> {
        Daemon::start_with_env(bins, paths, ns, profile, policy, extra, &[])
    }

    /// [`Daemon::start_with`] with environment variables for gatewayd (e.g. systemd's
    /// `NOTIFY_SOCKET` and `WATCHDOG_USEC`).
    pub fn start_with_env(
        bins: &Binaries,
        paths: &DaemonPaths,
        ns: &str,
        profile: &Path,
        policy: &Path,
        extra: &[std::ffi::OsString],
        env: &[(std::ffi::OsString, std::ffi::OsString)],
    ) -> Result<Daemon> {
        std::fs::create_dir_all(&paths.state_dir)
            .with_context(|| paths.state_dir.display().to_string())?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .context("gatewayd log")?;
        let mut cmd = netns::exec_in(ns, &bins.gatewayd);
        cmd.arg("--profile")
            .arg(profile)
            .arg("--policy")
            .arg(policy)
            .arg("--pin-dir")
            .arg(&paths.pin_dir)
            .arg("--state-dir")
            .arg(&paths.state_dir)
            .arg("--socket")
            .arg(&paths.socket)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
        // If the lab process dies, the daemon goes with it (the pinned state stays, as it must, and
        // `cleanup_stale` removes it).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bins.gatewayd.display()))?;
        std::fs::write(&paths.pid_file, child.id().to_string()).context("gatewayd pid file")?;
        let mut daemon = Daemon { child };
        daemon.wait_ready(bins, paths)?;
        Ok(daemon)
    }

    fn wait_ready(&mut self, bins: &Binaries, paths: &DaemonPaths) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "gatewayd exited before it was ready ({status}); its log:\n{}",
                    read_log(&paths.log)
                );
            }
            if paths.socket.exists() && ctl(bins, &paths.socket, &["status"])?.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "gatewayd did not answer `gatewayctl status` within {READY_TIMEOUT:?}; its log:\n{}",
                    read_log(&paths.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` and waits (at most 10 s) for the daemon to exit.
    pub fn kill(mut self, signal: i32) -> Result<ExitStatus> {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        if unsafe { libc::kill(self.child.id() as i32, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill gatewayd");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("gatewayd did not exit within 10 s of signal {signal}; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The log of the daemon, for error messages.
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}

/// The outcome of one gatewayctl run.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `gatewayctl --socket <socket> <args>`, from the host (the socket is a path, reachable from any
/// network namespace).
pub fn ctl(bins: &Binaries, socket: &Path, args: &[&str]) -> Result<CtlOutput> {
    let out = Command::new(&bins.gatewayctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bins.gatewayctl.display()))?;
    Ok(CtlOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `gatewayd --teardown --pin-dir <dir>` inside the gateway namespace.
pub fn teardown_pins(bins: &Binaries, ns: &str, pin_dir: &Path) -> Result<()> {
    let out = netns::exec_in(ns, &bins.gatewayd)
        .arg("--teardown")
        .arg("--pin-dir")
        .arg(pin_dir)
        .output()
        .context("running gatewayd --teardown")?;
    netns::ensure_success(&out, "gatewayd --teardown")
}

/// `gatewayctl status --json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub generation: u64,
    pub image_hash: String,
    pub policy: String,
    pub ports: Vec<PortStatus>,
    pub entries: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PortStatus {
    pub name: String,
    pub ifindex: u32,
    pub role: String,
    pub mode: String,
}

/// One row of `gatewayctl stats --json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct CounterRow {
    pub role: String,
    pub reason: String,
    pub verdict: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Deserialize)]
struct StatsJson {
    counters: Vec<CounterRow>,
}

/// All counters, keyed by (role, reason) words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    rows: BTreeMap<(String, String), CounterRow>,
}

impl Stats {
    pub fn parse(json: &str) -> Result<Stats> {
        let parsed: StatsJson =
            serde_json::from_str(json).with_context(|| format!("stats --json output: {json}"))?;
        let rows = parsed
            .counters
            .into_iter()
            .map(|r| ((r.role.clone(), r.reason.clone()), r))
            .collect();
        Ok(Stats { rows })
    }

    /// Packets counted for (role, reason); 0 for a pair that has no row.
    pub fn packets(&self, role: Role, reason: Reason) -> u64 {
        self.packets_by_name(role.as_str(), reason.as_str())
    }

    pub fn packets_by_name(&self, role: &str, reason: &str) -> u64 {
        self.rows
            .get(&(role.to_owned(), reason.to_owned()))
            .map_or(0, |r| r.packets)
    }

    pub fn rows(&self) -> impl Iterator<Item = &CounterRow> {
        self.rows.values()
    }

    /// Counters that grew since `earlier`: ((role, reason), packets added), drops first.
    pub fn moved_since(&self, earlier: &Stats) -> Vec<((String, String), u64)> {
        let mut moved: Vec<_> = self
            .rows
            .iter()
            .filter_map(|(key, row)| {
                let before = earlier.rows.get(key).map_or(0, |r| r.packets);
                (row.packets > before).then(|| (key.clone(), row.packets - before))
            })
            .collect();
        moved.sort_by_key(|((_, reason), _)| {
            (reason == "pass" || reason == "non_ip", reason.clone())
        });
        moved
    }

    /// Whether every (role, reason) pair of the contract has a row (zeros included).
    pub fn missing_rows(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for row in 0..Role::STATS_ROWS {
            for reason in Reason::ALL {
                let role = Role::row_name(row);
                if !self
                    .rows
                    .contains_key(&(role.to_owned(), reason.as_str().to_owned()))
                {
                    missing.push(format!("{role}/{}", reason.as_str()));
                }
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_deltas_name_the_moved_counters() {
        let before = Stats::parse(r#"{"counters":[{"role":"lan","reason":"blocklist","verdict":"drop","packets":1,"bytes":98},{"role":"lan","reason":"pass","verdict":"pass","packets":5,"bytes":500}]}"#).expect("parses");
        let after = Stats::parse(r#"{"counters":[{"role":"lan","reason":"blocklist","verdict":"drop","packets":3,"bytes":294},{"role":"lan","reason":"pass","verdict":"pass","packets":9,"bytes":900}]}"#).expect("parses");
        assert_eq!(after.packets(Role::Lan, Reason::Blocklist), 3);
        assert_eq!(after.packets(Role::Internet, Reason::Spoofed), 0);
        let moved = after.moved_since(&before);
        assert_eq!(moved[0], (("lan".into(), "blocklist".into()), 2));
        assert_eq!(moved[1], (("lan".into(), "pass".into()), 4));
    }
}
