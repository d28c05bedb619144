//! Namespace lab for the real-kernel tests: a client, the gateway, an Internet server and a
//! dedicated-network server, each in its own network namespace, created per test and always deleted.
//! Nothing here runs nft or changes anything in the host's namespace.
//!
//! ```text
//!  client ns            gateway ns                         internet ns
//!  eth0 10.99.1.10  --- lan0  10.99.1.1    inet0 198.51.100.1 --- eth0 198.51.100.2
//!       10.99.1.100        2001:db8:99:1::1      2001:db8:99:f::1      2001:db8:99:f::2
//!       2001:db8:99:1::10  ded0  10.99.2.1
//!       2001:db8:99:1::100   |
//!                          eth0 10.99.2.2  dedicated ns
//! ```
#![allow(dead_code)] // reason: each test binary uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: test code

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use gateway_common::Role;
use gateway_nft::nftables::schema::{NfListObject, NfObject, Nftables};
use gateway_nft::nftables::stmt::{Counter, Statement};
use gateway_nft::{BootInput, Management, NftInput, Port};

pub const CLIENT: &str = "10.99.1.10"; // inside the management prefix 10.99.1.0/28
pub const CLIENT_OUTSIDE_MGMT: &str = "10.99.1.100";
pub const CLIENT_NOT_LAN: &str = "10.99.3.5"; // not in the lan prefixes: a spoofed source
pub const CLIENT6: &str = "2001:db8:99:1::10"; // inside 2001:db8:99:1::/120
pub const CLIENT6_OUTSIDE_MGMT: &str = "2001:db8:99:1::100";
pub const GW_LAN: &str = "10.99.1.1";
pub const GW_LAN6: &str = "2001:db8:99:1::1";
pub const GW_DED: &str = "10.99.2.1";
pub const GW_INET: &str = "198.51.100.1";
pub const GW_INET6: &str = "2001:db8:99:f::1";
pub const INET_SERVER: &str = "198.51.100.2";
pub const INET_SERVER6: &str = "2001:db8:99:f::2";
pub const DED_SERVER: &str = "10.99.2.2";

pub const API_PORT: u16 = 8443;
pub const METRICS_PORT: u16 = 9464;
/// A port something listens on that no rule opens.
pub const OTHER_PORT: u16 = 8080;

/// Panics (never skips) unless the test can run: root, and the tools it drives.
pub fn require_root_and_tools() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (network namespaces, nftables); run it as root, e.g. `sudo -E cargo test -p gateway-nft`"
    );
    for (tool, arg, package) in [
        ("nft", "--version", "nftables"),
        ("ip", "-V", "iproute2"),
        ("socat", "-V", "socat"),
        ("ping", "-V", "iputils-ping"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "this test needs `{tool}` (Debian package {package}): apt-get install -y --no-install-recommends {package}"
        );
    }
}

/// The boot input of the lab's gateway: metrics (9464) from its dedicated port.
pub fn lab_boot_input() -> BootInput {
    BootInput {
        dedicated_ifnames: vec!["ded0".into()],
        metrics_tcp_ports: vec![9464],
    }
}

/// The input the lab's gateway runs: lab ports, lab prefixes, management on 8443 and 9464 from
/// 10.99.1.0/28 and 2001:db8:99:1::/120, IPv6 of the lan masqueraded (documentation addresses stand
/// in for a unique-local lan here).
pub fn lab_input() -> NftInput {
    let port = |name: &str, role| Port {
        name: name.into(),
        ifname: name.into(),
        role,
    };
    NftInput {
        ports: vec![
            port("lan0", Role::Lan),
            port("ded0", Role::Dedicated),
            port("inet0", Role::Internet),
        ],
        lan_prefixes: vec![
            "10.99.1.0/24".parse().unwrap(),
            "2001:db8:99:1::/64".parse().unwrap(),
        ],
        dedicated_prefixes: vec!["10.99.2.0/24".parse().unwrap()],
        management: Management {
            prefixes: vec![
                "10.99.1.0/28".parse().unwrap(),
                "2001:db8:99:1::/120".parse().unwrap(),
            ],
            api_port: Some(API_PORT),
            metrics_port: Some(METRICS_PORT),
            ssh_port: None,
        },
        masquerade: true,
        masquerade_v6: vec!["2001:db8:99:1::/64".parse().unwrap()],
        lan_services: Default::default(),
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// A network namespace this process created; deleted on drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    /// `ip netns add <name>`, loopback up.
    pub fn create(name: String) -> Ns {
        ip(&["netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> …`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `ip netns exec <ns> <program> <args>`: output, whatever the exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {} {program}: {e}", self.name))
    }

    /// Like [`Ns::exec`], asserting success; stdout.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "ip netns exec {} {program} {args:?} failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread that has entered this namespace (setns affects only the calling thread;
    /// processes it spawns, such as nft, inherit it).
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path);
                f()
            })
            .join()
            .expect("thread in namespace panicked")
        })
    }

    /// A TCP connection from `src` to `dst` with socat: the first line the server sends, or why
    /// there was none. `wait` bounds the connect (a dropped SYN never completes).
    pub fn tcp_probe(&self, src: &str, dst: &str, port: u16, wait: Wait) -> Result<String, String> {
        let (kind, s, d) = if src.contains(':') {
            ("TCP6", format!("[{src}]"), format!("[{dst}]"))
        } else {
            ("TCP4", src.to_string(), dst.to_string())
        };
        let target = format!(
            "{kind}:{d}:{port},bind={s},connect-timeout={}",
            wait.seconds()
        );
        let out = self.exec("socat", &["-T", "30", "-u", &target, "STDOUT"]);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !stdout.is_empty() {
            Ok(stdout)
        } else {
            Err(format!(
                "{src} -> {dst}:{port}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// One ping; whether it was answered.
    pub fn ping(&self, dst: &str, wait: Wait) -> bool {
        self.exec(
            "ping",
            &["-n", "-c", "1", "-W", &wait.seconds().to_string(), dst],
        )
        .status
        .success()
    }

    /// Table inet gateway as the kernel in this namespace has it.
    pub fn current(&self) -> Nftables<'static> {
        self.run_in(gateway_nft::current)
            .unwrap_or_else(|e| panic!("{}: {e:#?}", self.name))
            .unwrap_or_else(|| panic!("{}: no table inet gateway", self.name))
    }

    /// Applies a ruleset in this namespace.
    pub fn apply(&self, ruleset: &Nftables<'_>) {
        self.run_in(|| gateway_nft::apply(ruleset))
            .unwrap_or_else(|e| panic!("apply in {}: {e}", self.name));
    }

    /// Packets counted by the rule with this comment in table inet gateway.
    pub fn counter(&self, comment: &str) -> u64 {
        rule_counter(&self.current(), comment)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // Best effort in Drop (may run during a panic): report, do not panic again.
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("ip netns del {}: {e}", self.name),
        }
    }
}

fn enter(path: &PathBuf) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: `f` is an open namespace file for the duration of the call; setns changes only the
    // network namespace of the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// How long a probe may wait for an answer. Positive probes get room for a noisy machine; negative
/// ones are backed by a drop counter, not by the wait alone.
#[derive(Clone, Copy)]
pub enum Wait {
    /// Expected to be answered.
    Answer,
    /// Expected to be dropped.
    Drop,
}

impl Wait {
    fn seconds(self) -> u32 {
        match self {
            Wait::Answer => 20,
            Wait::Drop => 3,
        }
    }
}

/// Packets counted by the (first) rule with this comment.
pub fn rule_counter(ruleset: &Nftables<'_>, comment: &str) -> u64 {
    for o in ruleset.objects.iter() {
        if let NfObject::ListObject(NfListObject::Rule(r)) = o
            && r.comment.as_deref() == Some(comment)
        {
            for s in r.expr.iter() {
                if let Statement::Counter(Counter::Anonymous(Some(c))) = s {
                    return c.packets.unwrap_or(0) as u64;
                }
            }
            panic!("rule {comment:?} has no counter");
        }
    }
    panic!("no rule {comment:?} in the ruleset");
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The four namespaces, wired and addressed; the gateway forwards, with no ruleset yet.
pub struct Lab {
    pub client: Ns,
    pub gw: Ns,
    pub inet: Ns,
    pub ded: Ns,
}

impl Lab {
    pub fn new() -> Lab {
        require_root_and_tools();
        let id = format!(
            "nft{}-{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mk = |role: &str| Ns::create(format!("gwt-{id}-{role}"));
        let lab = Lab {
            client: mk("c"),
            gw: mk("gw"),
            inet: mk("inet"),
            ded: mk("ded"),
        };
        // Both veth ends are created inside the namespaces: the host never sees them.
        for (port, peer) in [
            ("lan0", &lab.client),
            ("ded0", &lab.ded),
            ("inet0", &lab.inet),
        ] {
            lab.gw.ip(&[
                "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
            ]);
            lab.gw.ip(&["link", "set", port, "up"]);
            peer.ip(&["link", "set", "eth0", "up"]);
        }
        let addr = |ns: &Ns, dev: &str, a: &str| {
            if a.contains(':') {
                ns.ip(&["-6", "addr", "add", a, "dev", dev, "nodad"]);
            } else {
                ns.ip(&["addr", "add", a, "dev", dev]);
            }
        };
        addr(&lab.gw, "lan0", "10.99.1.1/24");
        addr(&lab.gw, "lan0", "2001:db8:99:1::1/64");
        addr(&lab.gw, "ded0", "10.99.2.1/24");
        addr(&lab.gw, "inet0", "198.51.100.1/24");
        addr(&lab.gw, "inet0", "2001:db8:99:f::1/64");
        lab.gw.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        lab.gw
            .exec_ok("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);

        addr(&lab.client, "eth0", "10.99.1.10/24");
        addr(&lab.client, "eth0", "10.99.1.100/24");
        addr(&lab.client, "eth0", "10.99.3.5/32");
        addr(&lab.client, "eth0", "2001:db8:99:1::10/64");
        addr(&lab.client, "eth0", "2001:db8:99:1::100/64");
        lab.client.ip(&["route", "add", "default", "via", GW_LAN]);
        lab.client
            .ip(&["-6", "route", "add", "default", "via", GW_LAN6]);

        addr(&lab.ded, "eth0", "10.99.2.2/24");
        lab.ded.ip(&["route", "add", "default", "via", GW_DED]);

        addr(&lab.inet, "eth0", "198.51.100.2/24");
        addr(&lab.inet, "eth0", "2001:db8:99:f::2/64");
        // Routes back into the office and the dedicated network exist on purpose: the server then
        // sees the client's own address unless the gateway masquerades, and it can try to reach in.
        lab.inet
            .ip(&["route", "add", "10.99.0.0/16", "via", GW_INET]);
        lab.inet
            .ip(&["-6", "route", "add", "2001:db8:99::/48", "via", GW_INET6]);
        lab
    }
}

/// What a test server does with a connection.
#[derive(Clone, Copy)]
pub enum Reply {
    /// Writes the peer's address and a newline, then closes: "who do I see?".
    PeerAddr,
    /// Echoes every line until the client closes.
    Echo,
}

/// A TCP server on a thread inside a namespace; listening when `start` returns; stopped on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(ns: &Ns, addr: &str, port: u16, reply: Reply) -> Server {
        let path = ns.path();
        let bind = SocketAddr::new(addr.parse::<IpAddr>().unwrap(), port);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            enter(&path);
            let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        conn.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || serve(conn, peer, reply));
                    }
                    // Polling keeps the stop flag simple; 20 ms only delays shutdown.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => panic!("accept on {bind}: {e}"),
                }
            }
        });
        ready_rx
            .recv()
            .unwrap_or_else(|_| panic!("server {bind} did not start"));
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(mut conn: TcpStream, peer: SocketAddr, reply: Reply) {
    match reply {
        Reply::PeerAddr => {
            let _ = writeln!(conn, "{}", peer.ip());
        }
        Reply::Echo => {
            let Ok(read_half) = conn.try_clone() else {
                return;
            };
            for line in BufReader::new(read_half).lines() {
                let Ok(line) = line else { return };
                if writeln!(conn, "{line}").is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
