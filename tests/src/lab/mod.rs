//! The namespace lab: a gateway namespace between an office lan, the dedicated government network and
//! the Internet (see [`topology`] for the picture and the addresses), real servers and packet taps in
//! the three leaves, and gatewayd driven through gatewayctl.
//!
//! ```no_run
//! use gateway_common::{Reason, Role};
//! use gateway_tests::lab::{EXAMPLE_POLICY, Lab, Probe, Side, addr};
//! # fn main() -> anyhow::Result<()> {
//! let mut lab = Lab::with_gatewayd(EXAMPLE_POLICY)?; // needs root; Drop tears everything down
//! lab.expect_delivered(Side::Client, addr::CLIENT_V4, addr::SHARED_NPDB_V4, Probe::Tcp(443))?;
//! lab.expect_dropped(Side::Client, addr::CLIENT_V4, addr::BLOCKED_V4, Probe::Ping, Role::Lan, Reason::Blocklist)?;
//! # Ok(()) }
//! ```
//!
//! Safety of the host: everything happens in namespaces named `gwl<pid>n<serial>-{gw,client,ded,inet}`;
//! veth pairs are created with both ends directly inside lab namespaces; sysctls are set only inside
//! them; the test process itself never leaves the host namespace (code that must run inside a lab
//! namespace runs on a thread of its own, see `netns`). Per lab, `/run/gwlab-<pid>n<serial>/` holds
//! a private bpffs (`bpf/`, gatewayd's `--pin-dir`), `state/`, `ctl.sock` and `gatewayd.log`.
//! Teardown (Drop) stops gatewayd, runs `gatewayd --teardown` (or removes the pins), stops servers and
//! taps, deletes the namespaces, unmounts the bpffs and removes the directory. [`cleanup_stale`] does
//! the same for labs whose process died.
//!
//! Binaries: see [`daemon`] (GATEWAYD / GATEWAYCTL, else next to the running executable).

pub mod cases;
pub mod daemon;
pub mod dns;
pub mod mtls;
mod netns;
mod peer_xdp;
pub mod servers;
pub mod soc;
pub mod tap;
pub mod topology;
pub mod traffic;
mod worker;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gateway_common::{Reason, Role};

pub use daemon::{Binaries, CtlOutput, Stats, Status};
pub use servers::{Hit, Proto};
pub use tap::{L4, PacketKey};
pub use topology::{Side, addr};
pub use traffic::{PingFlood, Probe, UdpFlood};

use daemon::{Daemon, DaemonPaths};
use servers::Servers;
use tap::Tap;

/// Every lab namespace name starts with this.
pub const NAME_PREFIX: &str = "gwl";
/// Every lab's directory is `/run/gwlab-<id>`.
pub const RUN_DIR_PREFIX: &str = "/run/gwlab-";
/// The hardware profile of the lab (ports lan0/ded0/inet0 by ifname), relative to the workspace.
pub const PROFILE: &str = "hw/lab-veth.toml";
/// The example policy, written for this topology.
pub const EXAMPLE_POLICY: &str = "configs/ward-office.toml";
/// A second valid policy: the example with a small local feed instead of the public ones.
pub const ALT_POLICY: &str = "tests/lab/ward-office-alt.toml";
/// Policies that must be refused: a bad CIDR, an unknown field (each marks its bad line `# BAD`).
pub const BAD_CIDR_POLICY: &str = "tests/lab/bad-cidr.toml";
pub const UNKNOWN_FIELD_POLICY: &str = "tests/lab/unknown-field.toml";

/// The 1-based line a bad-policy fixture marks with `# BAD` (exactly one): where the refusal must
/// point.
pub fn marked_bad_line(fixture: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(fixture).with_context(|| fixture.display().to_string())?;
    let marked: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("# BAD"))
        .map(|(i, _)| i + 1)
        .collect();
    match marked[..] {
        [line] => Ok(line),
        _ => bail!(
            "{} must mark exactly one line with `# BAD`, marks {marked:?}",
            fixture.display()
        ),
    }
}

/// The identity of one lab: the pid of the process that made it and a serial within that process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabId {
    pub pid: u32,
    pub serial: u32,
}

impl std::fmt::Display for LabId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}n{}", self.pid, self.serial)
    }
}

impl LabId {
    fn next() -> LabId {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        LabId {
            pid: std::process::id(),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Parses `<pid>n<serial>` from the start of `s`, returning the rest.
    fn parse_prefix(s: &str) -> Option<(LabId, &str)> {
        let (pid, rest) = s.split_once('n')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let serial = rest[..digits].parse().ok()?;
        Some((
            LabId {
                pid: pid.parse().ok()?,
                serial,
            },
            &rest[digits..],
        ))
    }

    /// The lab id of a namespace name like `gwl123n0-client`.
    fn of_namespace(name: &str) -> Option<(LabId, Side)> {
        let (id, rest) = LabId::parse_prefix(name.strip_prefix(NAME_PREFIX)?)?;
        let side = Side::ALL
            .into_iter()
            .find(|s| rest.strip_prefix('-') == Some(s.suffix()))?;
        Some((id, side))
    }

    pub fn namespace(&self, side: Side) -> String {
        format!("{NAME_PREFIX}{self}-{}", side.suffix())
    }

    pub fn run_dir(&self) -> PathBuf {
        PathBuf::from(format!("{RUN_DIR_PREFIX}{self}"))
    }

    /// The namespaces of this lab that exist right now.
    pub fn existing_namespaces(&self) -> Result<Vec<String>> {
        Ok(netns::list_namespaces()?
            .into_iter()
            .filter(|n| LabId::of_namespace(n).is_some_and(|(id, _)| id == *self))
            .collect())
    }
}

/// One lab. Build it with [`Lab::up`]; dropping it tears everything down.
pub struct Lab {
    id: LabId,
    paths: DaemonPaths,
    /// Namespaces created so far (teardown deletes exactly these).
    namespaces: Vec<Side>,
    bpffs_mounted: bool,
    taps: BTreeMap<Side, Tap>,
    servers: BTreeMap<Side, Servers>,
    bins: Option<Binaries>,
    daemon: Option<Daemon>,
    policy: Option<PathBuf>,
    /// Extra gatewayd arguments of the last start (a restart uses them again).
    gatewayd_args: Vec<std::ffi::OsString>,
    /// Environment for every later start of gatewayd ([`Lab::set_gatewayd_env`]).
    gatewayd_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    soc: Option<soc::Soc>,
    /// Print gatewayd's log when the lab is dropped (cargo test shows it only for failing tests).
    pub print_log_on_drop: bool,
}

impl Lab {
    /// Builds the topology, mounts the lab's bpffs and starts servers and taps. Needs root.
    pub fn up() -> Result<Lab> {
        ensure_root()?;
        if let Err(e) = cleanup_stale() {
            eprintln!("lab: cleaning up stale labs failed (continuing): {e:#}");
        }
        let id = LabId::next();
        let mut lab = Lab::shell(id);
        lab.build()
            .with_context(|| format!("bringing up lab {id}"))?;
        Ok(lab)
    }

    /// [`Lab::up`] and [`Lab::start_gatewayd`] with `policy`.
    pub fn with_gatewayd(policy: impl AsRef<Path>) -> Result<Lab> {
        let mut lab = Lab::up()?;
        lab.start_gatewayd(policy)?;
        Ok(lab)
    }

    /// A lab object that owns nothing yet (filled in by `build`, or by `cleanup_stale` to tear down the
    /// remains of a dead lab).
    fn shell(id: LabId) -> Lab {
        Lab {
            id,
            paths: DaemonPaths::under(&id.run_dir()),
            namespaces: Vec::new(),
            bpffs_mounted: false,
            taps: BTreeMap::new(),
            servers: BTreeMap::new(),
            bins: None,
            daemon: None,
            policy: None,
            gatewayd_args: Vec::new(),
            gatewayd_env: Vec::new(),
            soc: None,
            print_log_on_drop: true,
        }
    }

    fn build(&mut self) -> Result<()> {
        let run_dir = self.id.run_dir();
        if run_dir.exists() {
            bail!("{} already exists", run_dir.display());
        }
        std::fs::create_dir_all(&self.paths.pin_dir)
            .with_context(|| run_dir.display().to_string())?;
        mount_bpffs(&self.paths.pin_dir)?;
        self.bpffs_mounted = true;

        let id = self.id;
        let namespaces = &mut self.namespaces;
        topology::build(|side| id.namespace(side), |side| namespaces.push(side))?;
        // So DNS answers the gateway sends back with XDP_TX reach the office client.
        peer_xdp::attach_pass(&self.ns(Side::Client), "eth0", &self.paths.pin_dir)?;

        for side in Side::LEAVES {
            let ns = self.ns(side);
            self.taps.insert(side, Tap::start(&ns, "eth0")?);
            self.servers
                .insert(side, Servers::start(&ns, side.service_addresses())?);
        }
        Ok(())
    }

    pub fn id(&self) -> LabId {
        self.id
    }

    /// The name of a lab namespace.
    pub fn ns(&self, side: Side) -> String {
        self.id.namespace(side)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.id.run_dir()
    }

    /// Waits (10 s at most) for a line of gatewayd's local alert log (`state/alerts.jsonl`) that
    /// `matches`; the error names `what` and shows the log.
    pub fn wait_for_alert(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<()> {
        let alerts = self.run_dir().join("state/alerts.jsonl");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&alerts).unwrap_or_default();
            if text
                .lines()
                .any(|l| matches(&serde_json::from_str(l).unwrap_or_default()))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("no alert {what} in {}:\n{text}", alerts.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn pin_dir(&self) -> &Path {
        &self.paths.pin_dir
    }

    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    /// How to look around in this lab, for people.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "lab {} (state in {})", self.id, self.run_dir().display());
        for side in Side::ALL {
            let _ = writeln!(
                s,
                "  {:<7} ip netns exec {} bash",
                side.suffix(),
                self.ns(side)
            );
        }
        let _ = writeln!(
            s,
            "  gatewayctl --socket {} status",
            self.socket().display()
        );
        s
    }

    // ---- gatewayd ---------------------------------------------------------------------------------

    /// Binaries, located on first use (see [`daemon`]).
    pub fn binaries(&mut self) -> Result<&Binaries> {
        if self.bins.is_none() {
            let bins = Binaries::locate()?;
            eprintln!(
                "lab {}: using {} and {}",
                self.id,
                bins.gatewayd.display(),
                bins.gatewayctl.display()
            );
            self.bins = Some(bins);
        }
        self.bins.as_ref().context("binaries")
    }

    /// Starts gatewayd in the gateway namespace with `policy` (relative paths are taken from the
    /// workspace root) and waits until `gatewayctl status` answers.
    pub fn start_gatewayd(&mut self, policy: impl AsRef<Path>) -> Result<()> {
        self.start_gatewayd_with(policy, &[])
    }

    /// [`Lab::start_gatewayd`] with more arguments for gatewayd (e.g. `--api-listen …`).
    pub fn start_gatewayd_with(
        &mut self,
        policy: impl AsRef<Path>,
        extra: &[std::ffi::OsString],
    ) -> Result<()> {
        if self.daemon.as_mut().is_some_and(Daemon::is_running) {
            bail!("gatewayd already runs in lab {}", self.id);
        }
        let policy = workspace_path(policy.as_ref());
        let profile = workspace_path(Path::new(PROFILE));
        let bins = self.binaries()?.clone();
        let daemon = Daemon::start_with_env(
            &bins,
            &self.paths,
            &self.ns(Side::Gw),
            &profile,
            &policy,
            extra,
            &self.gatewayd_env,
        )?;
        self.daemon = Some(daemon);
        self.policy = Some(policy);
        self.gatewayd_args = extra.to_vec();
        Ok(())
    }

    /// Environment variables for every later start of gatewayd (systemd's `NOTIFY_SOCKET`, …).
    pub fn set_gatewayd_env(&mut self, env: Vec<(std::ffi::OsString, std::ffi::OsString)>) {
        self.gatewayd_env = env;
    }

    /// `ip -n <namespace of side> <args>` (e.g. a second address on the client).
    pub fn ip(&self, side: Side, args: &[&str]) -> Result<String> {
        netns::ip_in(&self.ns(side), args)
    }

    /// `program args` run inside the namespace of `side`; its stdout (an error on failure).
    pub fn run_in(&self, side: Side, program: &str, args: &[&str]) -> Result<String> {
        netns::output_in(&self.ns(side), program, args)
    }

    /// Starts gatewayd again with the policy it was last started with.
    pub fn restart_gatewayd(&mut self) -> Result<()> {
        let policy = self.policy.clone().context("gatewayd was never started")?;
        let extra = self.gatewayd_args.clone();
        self.start_gatewayd_with(policy, &extra)
    }

    /// Sends `signal` (libc::SIGTERM, libc::SIGKILL, …) to gatewayd and waits for it to exit.
    pub fn kill_gatewayd(&mut self, signal: i32) -> Result<ExitStatus> {
        let daemon = self.daemon.take().context("gatewayd is not running")?;
        daemon.kill(signal)
    }

    pub fn gatewayd_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// Everything gatewayd wrote to stdout/stderr in this lab (all runs).
    pub fn gatewayd_log(&self) -> String {
        daemon::read_log(&self.paths.log)
    }

    /// `gatewayctl <args>` run inside the namespace of `side` (e.g. a remote admin on the LAN);
    /// any exit code is returned, not an error.
    pub fn ctl_in(&mut self, side: Side, args: &[&str]) -> Result<CtlOutput> {
        let ns = self.ns(side);
        let ctl = self.binaries()?.gatewayctl.clone();
        let out = netns::exec_in(&ns, &ctl)
            .args(args)
            .output()
            .with_context(|| format!("running gatewayctl in {ns}"))?;
        Ok(CtlOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `gatewayctl --socket <this lab's socket> <args>`; any exit code is returned, not an error.
    pub fn ctl(&mut self, args: &[&str]) -> Result<CtlOutput> {
        let socket = self.paths.socket.clone();
        daemon::ctl(self.binaries()?, &socket, args)
    }

    /// Like [`Lab::ctl`] but a non-zero exit is an error carrying the output; returns stdout.
    pub fn ctl_ok(&mut self, args: &[&str]) -> Result<String> {
        let out = self.ctl(args)?;
        if !out.success() {
            bail!("gatewayctl {} failed: {out}", args.join(" "));
        }
        Ok(out.stdout)
    }

    /// `gatewayctl apply <policy>` (relative paths from the workspace root).
    pub fn apply(&mut self, policy: impl AsRef<Path>) -> Result<CtlOutput> {
        let policy = workspace_path(policy.as_ref());
        let policy = policy
            .to_str()
            .context("policy path is not UTF-8")?
            .to_owned();
        self.ctl(&["apply", &policy])
    }

    pub fn status(&mut self) -> Result<Status> {
        let json = self.ctl_ok(&["status", "--json"])?;
        serde_json::from_str(&json).with_context(|| format!("status --json output: {json}"))
    }

    pub fn stats(&mut self) -> Result<Stats> {
        Stats::parse(&self.ctl_ok(&["stats", "--json"])?)
    }

    /// Packets counted for (role, reason).
    pub fn counter(&mut self, role: Role, reason: Reason) -> Result<u64> {
        Ok(self.stats()?.packets(role, reason))
    }

    fn daemon_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }

    // ---- routes -------------------------------------------------------------------------------------

    /// `ip -n <gw> <args>`.
    pub fn ip_gw(&self, args: &[&str]) -> Result<String> {
        netns::ip_in(&self.ns(Side::Gw), args)
    }

    /// Points the shared system's prefixes (10.200.1.0/24, fd00:200:1::/48) at the Internet uplink.
    pub fn divert_shared_routes_to_internet(&self) -> Result<()> {
        for route in topology::SHARED_VIA_INTERNET_ROUTES {
            let mut args = vec!["route", "replace"];
            args.extend(route.split_whitespace());
            self.ip_gw(&args)?;
        }
        Ok(())
    }

    /// Removes the routes [`Lab::divert_shared_routes_to_internet`] added.
    pub fn restore_shared_routes(&self) -> Result<()> {
        for route in topology::SHARED_VIA_INTERNET_ROUTES {
            let prefix = route.split_whitespace().next().unwrap_or_default();
            self.ip_gw(&["route", "del", prefix])?;
        }
        Ok(())
    }

    // ---- traffic ------------------------------------------------------------------------------------

    /// One ping from `src` in `from` to `dst`: true when answered.
    pub fn ping(&self, from: Side, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Result<bool> {
        traffic::ping(&self.ns(from), src.into(), dst.into())
    }

    /// `program` to run in a lab namespace (real clients and servers: curl, dig, openssl).
    pub fn command_in(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns::exec_in(&self.ns(side), program)
    }

    /// A TCP handshake: true when it completed.
    pub fn tcp(
        &self,
        from: Side,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        port: u16,
    ) -> Result<bool> {
        traffic::tcp_connect(
            &self.ns(from),
            src.into(),
            SocketAddr::new(dst.into(), port),
        )
    }

    /// One UDP datagram to the echo server: true when echoed.
    pub fn udp(
        &self,
        from: Side,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        port: u16,
    ) -> Result<bool> {
        traffic::udp_echo(
            &self.ns(from),
            src.into(),
            SocketAddr::new(dst.into(), port),
        )
    }

    /// A paced UDP flood (bounded by `max_duration`) from `src` in `from`.
    pub fn udp_flood(
        &self,
        from: Side,
        src: impl Into<IpAddr>,
        targets: Vec<SocketAddr>,
        rate_per_target: u32,
        max_duration: Duration,
    ) -> Result<UdpFlood> {
        UdpFlood::start(
            &self.ns(from),
            src.into(),
            targets,
            rate_per_target,
            max_duration,
        )
    }

    /// A ping flood (bounded by `deadline`) from `src` in `from`.
    pub fn ping_flood(
        &self,
        from: Side,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        interval: Duration,
        deadline: Duration,
    ) -> Result<PingFlood> {
        PingFlood::start(&self.ns(from), src.into(), dst.into(), interval, deadline)
    }

    /// Packets matching `pred` that the taps of `sides` saw arrive.
    pub fn arrived(&self, sides: &[Side], pred: impl Fn(&PacketKey) -> bool) -> Result<u64> {
        let mut total = 0;
        for side in sides {
            if let Some(tap) = self.taps.get(side) {
                total += tap.count(&pred)?;
            }
        }
        Ok(total)
    }

    /// Packets to `dst` (any kind, any source) that arrived at any leaf.
    pub fn arrived_for(&self, dst: impl Into<IpAddr>) -> Result<u64> {
        let dst = dst.into();
        self.arrived(&Side::LEAVES, |k| k.dst == dst)
    }

    /// Connections/datagrams the servers of `sides` received that match `pred`.
    pub fn served(&self, sides: &[Side], pred: impl Fn(&Hit) -> bool) -> Result<u64> {
        let mut total = 0;
        for side in sides {
            if let Some(servers) = self.servers.get(side) {
                total += servers.count(&pred)?;
            }
        }
        Ok(total)
    }

    /// Packets the taps could not keep up with (a zero count only proves something when this is 0).
    pub fn tap_kernel_drops(&self) -> Result<u64> {
        let mut total = 0;
        for tap in self.taps.values() {
            total += tap.kernel_drops()?;
        }
        Ok(total)
    }

    /// Starts the SOC's tools (flow collectors, syslog receiver) on the dedicated network, where
    /// configs/ward-office.toml sends flows and alerts. Stopped at teardown.
    pub fn start_soc(&mut self) -> Result<&mut soc::Soc> {
        let started = soc::Soc::start(&self.ns(Side::Ded), &self.run_dir().join("soc"))?;
        Ok(self.soc.insert(started))
    }

    /// A TCP listener bound inside a lab namespace (its socket stays there), for a server the test
    /// runs itself (e.g. [`crate::feed_server::FeedServer`] on the Internet side).
    pub fn listen_in(&self, side: Side, addr: SocketAddr) -> Result<std::net::TcpListener> {
        netns::in_netns(&self.ns(side), move || {
            std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))
        })
    }

    /// The SOC, once started.
    pub fn soc(&mut self) -> Option<&mut soc::Soc> {
        self.soc.as_mut()
    }

    /// Sends one probe and records what happened: answered or not, whether it arrived at any other
    /// leaf (taps) or any server, and which gateway counters moved (when gatewayd runs).
    pub fn observe(
        &mut self,
        from: Side,
        src: IpAddr,
        dst: IpAddr,
        probe: Probe,
    ) -> Result<Observation> {
        let others: Vec<Side> = Side::LEAVES.into_iter().filter(|s| *s != from).collect();
        let is_probe = move |k: &PacketKey| {
            k.dst == dst
                && match probe {
                    Probe::Ping => k.l4.is_echo_request(),
                    Probe::Tcp(port) => {
                        k.l4 == L4::Tcp {
                            dport: port,
                            syn: true,
                        }
                    }
                    Probe::Udp(port) => k.l4 == L4::Udp { dport: port },
                }
        };
        let is_service = move |h: &Hit| match probe {
            Probe::Ping => false,
            Probe::Tcp(port) => h.proto == Proto::Tcp && h.local == SocketAddr::new(dst, port),
            Probe::Udp(port) => h.proto == Proto::Udp && h.local == SocketAddr::new(dst, port),
        };
        let with_counters = self.daemon_running();
        let stats_before = if with_counters {
            Some(self.stats()?)
        } else {
            None
        };
        let arrived_before = self.arrived(&others, is_probe)?;
        let served_before = self.served(&others, is_service)?;

        let answered = traffic::probe(&self.ns(from), src, dst, probe)?;

        let arrived = self.arrived(&others, is_probe)? - arrived_before;
        let served = self.served(&others, is_service)? - served_before;
        let moved = match stats_before {
            Some(before) => self.stats()?.moved_since(&before),
            None => Vec::new(),
        };
        Ok(Observation {
            from,
            src,
            dst,
            probe,
            answered,
            arrived,
            served,
            moved,
            with_counters,
        })
    }

    /// Sends the probe and fails unless it was answered and arrived at the other side.
    pub fn expect_delivered(
        &mut self,
        from: Side,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        probe: Probe,
    ) -> Result<Observation> {
        self.expect(from, src.into(), dst.into(), probe, Expect::Delivered)
    }

    /// Sends the probe and fails unless it went unanswered, nothing of it arrived at any other leaf or
    /// server, and the gateway counted it under (role, reason).
    pub fn expect_dropped(
        &mut self,
        from: Side,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        probe: Probe,
        role: Role,
        reason: Reason,
    ) -> Result<Observation> {
        self.expect(
            from,
            src.into(),
            dst.into(),
            probe,
            Expect::Dropped(role, reason),
        )
    }

    pub fn expect(
        &mut self,
        from: Side,
        src: IpAddr,
        dst: IpAddr,
        probe: Probe,
        expect: Expect,
    ) -> Result<Observation> {
        let obs = self.observe(from, src, dst, probe)?;
        if let Some(problem) = obs.mismatch(expect) {
            bail!(
                "{}: expected {expect}, but {problem}\nobserved: {obs}",
                obs.what()
            );
        }
        Ok(obs)
    }

    /// Runs every case (all of them, even after a deviation) and fails listing every deviation.
    pub fn check_cases(&mut self, cases: &[cases::Case]) -> Result<Vec<Observation>> {
        let mut observed = Vec::new();
        let mut deviations = Vec::new();
        for case in cases {
            let obs = self.observe(case.from, case.src, case.dst, case.probe)?;
            if let Some(problem) = obs.mismatch(case.expect) {
                deviations.push(format!(
                    "{} ({}): expected {}, but {problem}; observed {obs}",
                    obs.what(),
                    case.title(),
                    case.expect
                ));
            }
            observed.push(obs);
        }
        if !deviations.is_empty() {
            bail!(
                "{} of {} case(s) deviate:\n  {}",
                deviations.len(),
                cases.len(),
                deviations.join("\n  ")
            );
        }
        Ok(observed)
    }

    // ---- teardown -----------------------------------------------------------------------------------

    /// Tears the lab down now and reports every problem (Drop does the same but can only print them).
    pub fn teardown(mut self) -> Result<()> {
        let problems = self.teardown_all();
        if problems.is_empty() {
            return Ok(());
        }
        bail!(
            "teardown of lab {}: {}",
            self.id,
            problems
                .iter()
                .map(|e| format!("{e:#}"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }

    fn teardown_all(&mut self) -> Vec<anyhow::Error> {
        let mut problems = Vec::new();
        if let Some(daemon) = self.daemon.take()
            && let Err(e) = daemon.kill(libc::SIGTERM)
        {
            problems.push(e);
        }
        if let Some(soc) = self.soc.take()
            && let Err(e) = soc.stop()
        {
            problems.push(e);
        }
        if self.bpffs_mounted
            && let Err(e) = self.remove_pins()
        {
            problems.push(e);
        }
        for (_, mut tap) in std::mem::take(&mut self.taps) {
            if let Err(e) = tap.stop() {
                problems.push(e);
            }
        }
        for (_, mut servers) in std::mem::take(&mut self.servers) {
            if let Err(e) = servers.stop() {
                problems.push(e);
            }
        }
        for side in std::mem::take(&mut self.namespaces).into_iter().rev() {
            let name = self.ns(side);
            // Someone else (a concurrent cleanup_stale) removing it first is fine.
            if let Err(e) = netns::ip(&["netns", "del", &name])
                && netns::namespace_exists(&name)
            {
                problems.push(e);
            }
        }
        if self.bpffs_mounted {
            match unmount(&self.paths.pin_dir) {
                Ok(()) => self.bpffs_mounted = false,
                Err(_) if !is_mount_point(&self.paths.pin_dir) => self.bpffs_mounted = false,
                Err(e) => problems.push(e),
            }
        }
        let run_dir = self.run_dir();
        if !self.bpffs_mounted {
            match std::fs::remove_dir_all(&run_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems
                    .push(anyhow::Error::new(e).context(format!("removing {}", run_dir.display()))),
            }
        }
        problems
    }

    /// `gatewayd --teardown --pin-dir` (when the binary and the gateway namespace are there), else —
    /// or when that fails — removal of everything pinned.
    fn remove_pins(&mut self) -> Result<()> {
        let pin_dir = self.paths.pin_dir.clone();
        if dir_is_empty(&pin_dir) {
            return Ok(());
        }
        let gw = self.ns(Side::Gw);
        let gw_exists = netns::namespace_exists(&gw);
        let via_gatewayd = match (gw_exists, Binaries::locate()) {
            (true, Ok(bins)) => daemon::teardown_pins(&bins, &gw, &pin_dir),
            (false, _) => Err(anyhow::anyhow!("no gateway namespace")),
            (_, Err(e)) => Err(e),
        };
        if let Err(e) = via_gatewayd {
            eprintln!(
                "lab {}: gatewayd --teardown did not run ({e:#}); removing the pins",
                self.id
            );
        }
        remove_dir_contents(&pin_dir)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if (self.print_log_on_drop || std::thread::panicking()) && self.paths.log.exists() {
            eprintln!(
                "---- gatewayd log of lab {} ----\n{}---- end of log ----",
                self.id,
                self.gatewayd_log()
            );
        }
        for problem in self.teardown_all() {
            eprintln!("lab {}: teardown: {problem:#}", self.id);
        }
    }
}

/// What a probe is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Answered, and seen by the far side.
    Delivered,
    /// Unanswered, seen by no other leaf nor server, counted by the gateway under (role, reason).
    Dropped(Role, Reason),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Delivered => write!(f, "delivered"),
            Expect::Dropped(role, reason) => {
                write!(f, "dropped {}/{}", role.as_str(), reason.as_str())
            }
        }
    }
}

/// What one probe did.
#[derive(Clone, Debug)]
pub struct Observation {
    pub from: Side,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub probe: Probe,
    /// The answer came back.
    pub answered: bool,
    /// Packets of the probe (to `dst`, of its kind) that the other leaves' taps saw arrive.
    pub arrived: u64,
    /// Connections / datagrams the other leaves' servers got on `dst` (always 0 for ping).
    pub served: u64,
    /// Gateway counters that grew during the probe: ((role, reason), packets), drops first.
    pub moved: Vec<((String, String), u64)>,
    /// Whether gatewayd ran (else `moved` is empty by construction).
    pub with_counters: bool,
}

impl Observation {
    /// "client 10.10.0.2 -> 203.0.113.66 ping".
    pub fn what(&self) -> String {
        format!(
            "{} {} -> {} {}",
            self.from.suffix(),
            self.src,
            self.dst,
            self.probe
        )
    }

    /// "delivered", "arrived, no answer", "answered without arriving?!" or "blocked".
    pub fn outcome(&self) -> &'static str {
        match (self.answered, self.arrived > 0) {
            (true, true) => "delivered",
            (false, true) => "arrived, no answer",
            (true, false) => "answered, never arrived",
            (false, false) => "blocked",
        }
    }

    pub fn moved_by(&self, role: Role, reason: Reason) -> u64 {
        self.moved
            .iter()
            .filter(|((r, why), _)| r == role.as_str() && why == reason.as_str())
            .map(|(_, n)| *n)
            .sum()
    }

    /// The drop counters that moved, "lan/blocklist +1, …"; "-" when none.
    pub fn moved_drops(&self) -> String {
        let drops: Vec<String> = self
            .moved
            .iter()
            .filter(|((_, reason), _)| reason != "pass" && reason != "non_ip")
            .map(|((role, reason), n)| format!("{role}/{reason} +{n}"))
            .collect();
        if drops.is_empty() {
            "-".to_owned()
        } else {
            drops.join(", ")
        }
    }

    /// Why the observation does not fit `expect`, or None when it does.
    pub fn mismatch(&self, expect: Expect) -> Option<String> {
        match expect {
            Expect::Delivered => {
                if !self.answered {
                    return Some("no answer came back".into());
                }
                if self.arrived == 0 {
                    return Some("the far side's tap saw no packet of it".into());
                }
                if matches!(self.probe, Probe::Tcp(_) | Probe::Udp(_)) && self.served == 0 {
                    return Some("no server on the far side got it".into());
                }
                None
            }
            Expect::Dropped(role, reason) => {
                if self.answered {
                    return Some("it was answered".into());
                }
                if self.arrived > 0 {
                    return Some(format!(
                        "{} packet(s) of it arrived at the other side",
                        self.arrived
                    ));
                }
                if self.served > 0 {
                    return Some(format!("a server got it {} time(s)", self.served));
                }
                if !self.with_counters {
                    return Some("gatewayd is not running, no counter to check".into());
                }
                if self.moved_by(role, reason) == 0 {
                    return Some(format!(
                        "counter {}/{} did not move",
                        role.as_str(),
                        reason.as_str()
                    ));
                }
                None
            }
        }
    }
}

impl std::fmt::Display for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let moved: Vec<String> = self
            .moved
            .iter()
            .map(|((role, reason), n)| format!("{role}/{reason} +{n}"))
            .collect();
        write!(
            f,
            "answered={} arrived={} served={} counters moved: [{}]",
            self.answered,
            self.arrived,
            self.served,
            if self.with_counters {
                moved.join(", ")
            } else {
                "no gatewayd".to_owned()
            }
        )
    }
}

/// Checks that do not stop a test at the first failure: every problem is collected and reported
/// together by [`Findings::finish`], so one run tells everything that is wrong.
#[derive(Debug, Default)]
pub struct Findings(Vec<String>);

impl Findings {
    /// Records `problem` unless `ok`.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    /// Records the error of `result`, if any, and passes its value on.
    pub fn record<T>(&mut self, result: Result<T>) -> Option<T> {
        result.map_err(|e| self.0.push(format!("{e:#}"))).ok()
    }

    /// Fails listing every recorded problem.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        bail!("{} problem(s):\n  {}", self.0.len(), self.0.join("\n  "))
    }
}

/// Fails with the message the tests promise when not root.
pub fn ensure_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "this test needs root (network namespaces, XDP); run it as root, e.g. `sudo -E cargo test -p gateway-tests --test lab_...`"
        );
    }
    Ok(())
}

/// Removes the remains of labs whose process no longer exists: their gatewayd (only if its command
/// line names that lab's pin dir), pins, namespaces, bpffs and directory. Labs of live processes,
/// including this one, are left alone.
pub fn cleanup_stale() -> Result<Vec<LabId>> {
    let mut stale: BTreeMap<LabId, Vec<Side>> = BTreeMap::new();
    for name in netns::list_namespaces()? {
        if let Some((id, side)) = LabId::of_namespace(&name)
            && !netns::pid_alive(id.pid)
        {
            stale.entry(id).or_default().push(side);
        }
    }
    for entry in std::fs::read_dir("/run").context("/run")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&RUN_DIR_PREFIX["/run/".len()..]) else {
            continue;
        };
        if let Some((id, "")) = LabId::parse_prefix(rest)
            && !netns::pid_alive(id.pid)
        {
            stale.entry(id).or_default();
        }
    }
    let mut problems = Vec::new();
    for (id, sides) in &stale {
        let mut lab = Lab::shell(*id);
        lab.print_log_on_drop = false;
        lab.namespaces = Side::ALL
            .into_iter()
            .filter(|s| sides.contains(s))
            .collect();
        lab.bpffs_mounted = is_mount_point(&lab.paths.pin_dir);
        if let Err(e) = kill_stale_gatewayd(&lab.paths) {
            problems.push(format!("{id}: {e:#}"));
        }
        problems.extend(
            lab.teardown_all()
                .into_iter()
                .map(|e| format!("{id}: {e:#}")),
        );
    }
    if !problems.is_empty() {
        bail!("stale labs not fully removed: {}", problems.join("; "));
    }
    Ok(stale.into_keys().collect())
}

/// Kills the gatewayd recorded in a dead lab's pid file, if that pid still runs a gatewayd whose
/// command line names the lab's pin dir (so an unrelated process that reused the pid is left alone).
fn kill_stale_gatewayd(paths: &DaemonPaths) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(&paths.pid_file) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(());
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Ok(());
    };
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !(cmdline.contains("gatewayd") && cmdline.contains(&*paths.pin_dir.to_string_lossy())) {
        return Ok(());
    }
    // SAFETY: kill(2) on a pid just checked to be the dead lab's gatewayd.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while netns::pid_alive(pid) {
        if Instant::now() > deadline {
            bail!("stale gatewayd {pid} did not die");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `path` as given when absolute, else under the workspace root.
fn workspace_path(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        daemon::workspace_root().join(path)
    }
}

fn mount_bpffs(dir: &Path) -> Result<()> {
    let target =
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).context("pin dir path")?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call; data is null.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mount -t bpf bpf {}", dir.display()));
    }
    Ok(())
}

fn unmount(dir: &Path) -> Result<()> {
    let target =
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).context("pin dir path")?;
    // SAFETY: `target` is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    // Still busy (a process in another mount namespace holds it): detach it from the tree.
    // SAFETY: as above.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        eprintln!("lab: {} was busy ({err}); detached", dir.display());
        return Ok(());
    }
    Err(err).with_context(|| format!("umount {}", dir.display()))
}

fn is_mount_point(dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(&*want))
        })
        .unwrap_or(false)
}

/// Files every fresh bpffs shows (the kernel's preloaded iterators); they cannot be removed.
const KERNEL_BPFFS_FILES: [&str; 2] = ["maps.debug", "progs.debug"];

/// What is pinned in a bpffs, without the kernel's own files.
fn pinned_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    };
    let mut pinned = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !KERNEL_BPFFS_FILES.iter().any(|k| entry.file_name() == *k) {
            pinned.push(entry.path());
        }
    }
    Ok(pinned)
}

fn dir_is_empty(dir: &Path) -> bool {
    pinned_entries(dir).map(|p| p.is_empty()).unwrap_or(true)
}

fn remove_dir_contents(dir: &Path) -> Result<()> {
    for path in pinned_entries(dir)? {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_round_trip() {
        let id = LabId {
            pid: 4242,
            serial: 7,
        };
        for side in Side::ALL {
            assert_eq!(LabId::of_namespace(&id.namespace(side)), Some((id, side)));
        }
        assert_eq!(id.run_dir(), PathBuf::from("/run/gwlab-4242n7"));
        assert_eq!(LabId::of_namespace("gwlfoo-gw"), None);
        assert_eq!(LabId::of_namespace("gwl12n3-router"), None);
        assert_eq!(
            LabId::parse_prefix("12n3"),
            Some((LabId { pid: 12, serial: 3 }, ""))
        );
    }
}
