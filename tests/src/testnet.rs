//! A private network namespace with the gateway's ports (veth pairs) whose routes are programmed from
//! a reference-model route table, for `BPF_PROG_TEST_RUN`: the program looks its ingress port up in
//! `PORTS` and asks `bpf_fib_lookup` where a packet would go, so both need real interfaces and routes
//! in the caller's namespace. Because the kernel is programmed from the same [`StaticRoutes`] the
//! reference model consults, the two cannot drift apart.
use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};
use gateway_common::{Role, values::DatapathConfig};
use gateway_dataplane::{Dataplane, LoadOptions, Persistence, Program, RunOutcome, Runner};
use gateway_reference::{Egress, Ports, StaticRoutes};
use ipnet::IpNet;

/// Port names in the namespace; `spare0` exists but has no role (the unknown port).
const PORTS: [(Role, &str); 3] = [
    (Role::Lan, "lan0"),
    (Role::Dedicated, "ded0"),
    (Role::Internet, "inet0"),
];
const SPARE: &str = "spare0";

/// Fails loudly (never skips) when not root: these tests must run, and in CI they do.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (network namespaces, BPF); run it as root — CI does");
    }
    Ok(())
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace with ports `lan0`, `ded0`, `inet0` and `spare0`; deleted on drop.
pub struct TestNet {
    pub name: String,
    /// (role, name, ifindex) of each port with a role.
    pub ports: Vec<(Role, &'static str, u32)>,
    /// A port that is not in the port map.
    pub spare: u32,
    ns: OwnedFd,
}

impl TestNet {
    pub fn create() -> anyhow::Result<TestNet> {
        require_root("this test")?;
        let name = format!(
            "gwtn-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name])?;
        let ns: OwnedFd = match std::fs::File::open(format!("/run/netns/{name}")) {
            Ok(f) => f.into(),
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                bail!("opening /run/netns/{name}: {e}");
            }
        };
        // From here on, Drop removes the namespace even if the set-up fails half-way.
        let mut net = TestNet {
            name,
            ports: Vec::new(),
            spare: 0,
            ns,
        };
        net.configure()?;
        Ok(net)
    }

    fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    fn configure(&mut self) -> anyhow::Result<()> {
        // Without forwarding, bpf_fib_lookup answers FWD_DISABLED for every transit packet.
        for key in [
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv6.conf.all.forwarding=1",
        ] {
            run(&["ip", "netns", "exec", &self.name, "sysctl", "-q", "-w", key])?;
        }
        self.ip(&["link", "set", "lo", "up"])?;
        for name in PORTS.iter().map(|(_, n)| *n).chain([SPARE]) {
            let peer = format!("{name}p");
            self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])?;
            self.ip(&["link", "set", name, "up"])?;
            self.ip(&["link", "set", &peer, "up"])?;
        }
        for (role, name) in PORTS {
            let ifindex = self.ifindex(name)?;
            self.ports.push((role, name, ifindex));
        }
        self.spare = self.ifindex(SPARE)?;
        Ok(())
    }

    fn ifindex(&self, dev: &str) -> anyhow::Result<u32> {
        // /sys/class/net shows the caller's namespace, not this one: ask ip.
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", dev])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no ifindex for {dev} in {text:?}"))
    }

    fn port_name(&self, ifindex: u32) -> anyhow::Result<&'static str> {
        if ifindex == self.spare {
            return Ok(SPARE);
        }
        self.ports
            .iter()
            .find(|(_, _, i)| *i == ifindex)
            .map(|(_, n, _)| *n)
            .with_context(|| format!("no port {ifindex}"))
    }

    pub fn ifindex_of(&self, role: Role) -> u32 {
        self.ports
            .iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, _, i)| *i)
            .unwrap_or(0)
    }

    /// The corpus topology (tests/src/corpus.rs) with this namespace's real ifindexes.
    pub fn corpus_addrs(&self) -> crate::corpus::CorpusAddrs {
        crate::corpus::CorpusAddrs {
            lan_if: self.ifindex_of(Role::Lan),
            dedicated_if: self.ifindex_of(Role::Dedicated),
            internet_if: self.ifindex_of(Role::Internet),
            unknown_if: self.spare,
            ..crate::corpus::CorpusAddrs::example()
        }
    }

    /// Moves the calling thread into the namespace named `name` (for threads that only have the
    /// name: BPF_PROG_TEST_RUN resolves the ingress port in the calling thread's namespace).
    pub fn enter_by_name(name: &str) -> anyhow::Result<()> {
        let path = format!("/run/netns/{name}");
        let ns = std::fs::File::open(&path).with_context(|| path.clone())?;
        // SAFETY: setns changes only this thread's namespace, to an open namespace file.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns into {path}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The reference model's view of the port map.
    pub fn reference_ports(&self) -> Ports {
        self.ports.iter().map(|(r, _, i)| (*i, *r)).collect()
    }

    /// Programs the kernel with `routes`: a port route per `Port`, a `local` route per `Local`, an
    /// `unreachable` route per `Unroutable`, and the table's default for v4 and v6.
    pub fn install_routes(&self, routes: &StaticRoutes) -> anyhow::Result<()> {
        let default: [IpNet; 2] = ["0.0.0.0/0".parse()?, "::/0".parse()?];
        let entries = routes
            .entries()
            .chain(default.into_iter().map(|n| (n, routes.default_egress())));
        for (net, egress) in entries {
            let family = if matches!(net, IpNet::V4(_)) {
                "-4"
            } else {
                "-6"
            };
            let net = net.to_string();
            match egress {
                Egress::Port(i) => {
                    self.ip(&[family, "route", "replace", &net, "dev", self.port_name(i)?])?
                }
                Egress::Local => {
                    self.ip(&[family, "route", "replace", "local", &net, "dev", "lo"])?
                }
                Egress::Unroutable => {
                    self.ip(&[family, "route", "replace", "unreachable", &net])?
                }
            }
        }
        Ok(())
    }

    /// Moves the calling thread into the namespace (BPF_PROG_TEST_RUN and the FIB use the caller's).
    pub fn enter(&self) -> anyhow::Result<()> {
        // SAFETY: `ns` is an open /run/netns file; setns only changes this thread's namespace.
        let rc = unsafe { libc::setns(self.ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            bail!(
                "setns into {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// The lab's addressing seen from the gateway (tests/src/lab, configs/ward-office.toml).
    pub fn lab_routes(&self) -> StaticRoutes {
        let (lan, ded, inet) = (
            self.ifindex_of(Role::Lan),
            self.ifindex_of(Role::Dedicated),
            self.ifindex_of(Role::Internet),
        );
        let mut r = StaticRoutes::new(Egress::Port(inet));
        for (net, egress) in [
            ("10.10.0.0/24", Egress::Port(lan)),
            ("fd00:10::/64", Egress::Port(lan)),
            ("10.200.0.0/16", Egress::Port(ded)),
            ("172.16.0.0/24", Egress::Port(ded)),
            ("fd00:200::/32", Egress::Port(ded)),
            ("10.10.0.1/32", Egress::Local),
            ("172.16.0.1/32", Egress::Local),
            ("198.51.100.1/32", Egress::Local),
        ] {
            if let Ok(n) = net.parse() {
                r.insert(n, egress);
            }
        }
        r
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A namespace with routes, the program loaded with private maps, its ports bound, and a runner:
/// everything a packet test or a benchmark needs.
pub struct XdpHarness {
    pub net: TestNet,
    pub dp: Dataplane,
    pub runner: Runner,
}

impl XdpHarness {
    /// Builds the namespace, enters it on the calling thread and programs `routes(net)`.
    pub fn new(routes: impl FnOnce(&TestNet) -> StaticRoutes) -> anyhow::Result<XdpHarness> {
        Self::with_options(routes, LoadOptions::default())
    }

    /// As [`XdpHarness::new`], with the load-time sizes of `options` (a profile's `[datapath]`).
    pub fn with_options(
        routes: impl FnOnce(&TestNet) -> StaticRoutes,
        options: LoadOptions,
    ) -> anyhow::Result<XdpHarness> {
        let net = TestNet::create()?;
        net.enter()?;
        net.install_routes(&routes(&net))?;
        let mut dp =
            Dataplane::load_with(Persistence::Ephemeral, DatapathConfig::DEFAULT, options)?;
        let bindings: Vec<_> = net.ports.iter().map(|(r, _, i)| (*i, *r)).collect();
        dp.bind_ports(&bindings)?;
        let runner = dp.runner(Program::Gateway)?;
        Ok(XdpHarness { net, dp, runner })
    }

    /// One frame through the real program: its action and the reason it counted.
    pub fn run(&self, ingress_ifindex: u32, frame: &[u8]) -> anyhow::Result<RunOutcome> {
        Ok(self.dp.run_frame(&self.runner, ingress_ifindex, frame)?)
    }
}

/// Runs a frame the policy must drop and one it must pass through the program, over and over on
/// another thread, while the caller swaps policies; every other verdict is a lapse.
pub struct LapseWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<(u64, u64)>>,
}

impl LapseWatch {
    pub fn start(
        net: &TestNet,
        runner: Runner,
        ingress: u32,
        blocked: Vec<u8>,
        allowed: Vec<u8>,
    ) -> LapseWatch {
        use gateway_dataplane::{XDP_DROP, XDP_PASS};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        let netns = format!("/run/netns/{}", net.name);
        let thread = std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
            // BPF_PROG_TEST_RUN resolves the ingress port in the calling thread's namespace.
            let ns = std::fs::File::open(&netns).with_context(|| netns.clone())?;
            // SAFETY: setns changes only this thread's namespace, to an open namespace file.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns into {netns}: {}", std::io::Error::last_os_error());
            }
            let (mut runs, mut lapses) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let (a, _) = runner.run(ingress, &blocked, 1)?;
                let (b, _) = runner.run(ingress, &allowed, 1)?;
                runs += 2;
                lapses += u64::from(a != XDP_DROP) + u64::from(b != XDP_PASS);
            }
            Ok((runs, lapses))
        });
        LapseWatch { stop, thread }
    }

    /// Stops the watcher: (verdicts checked, lapses).
    pub fn finish(self) -> anyhow::Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("lapse watcher panicked"))?
    }
}
