//! Traffic sources: one-shot probes (ping, TCP connect, UDP echo) and paced floods, each run from a
//! chosen source address inside a lab namespace.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use socket2::{Domain, Protocol, Socket, Type};

use super::netns;

/// How long a probe waits for its answer. Blocked probes cost this much each.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One kind of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// One ICMP/ICMPv6 echo request.
    Ping,
    /// A TCP handshake to this port.
    Tcp(u16),
    /// One UDP datagram to this port, answered by the echo server.
    Udp(u16),
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Ping => write!(f, "ping"),
            Probe::Tcp(p) => write!(f, "tcp/{p}"),
            Probe::Udp(p) => write!(f, "udp/{p}"),
        }
    }
}

/// Sends the probe from `src` inside `ns`; true when the answer came back within [`PROBE_TIMEOUT`].
pub fn probe(ns: &str, src: IpAddr, dst: IpAddr, probe: Probe) -> Result<bool> {
    match probe {
        Probe::Ping => ping(ns, src, dst),
        Probe::Tcp(port) => tcp_connect(ns, src, SocketAddr::new(dst, port)),
        Probe::Udp(port) => udp_echo(ns, src, SocketAddr::new(dst, port)),
    }
}

/// One echo request with iputils ping (exit 0: answered, 1: no answer, anything else: an error).
pub fn ping(ns: &str, src: IpAddr, dst: IpAddr) -> Result<bool> {
    let family = if dst.is_ipv4() { "-4" } else { "-6" };
    let wait = PROBE_TIMEOUT.as_secs().max(1).to_string();
    let out = netns::exec_in(ns, "ping")
        .args([
            family,
            "-n",
            "-c",
            "1",
            "-W",
            &wait,
            "-I",
            &src.to_string(),
            &dst.to_string(),
        ])
        .output()
        .context("cannot run ping (iputils-ping)")?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => {
            netns::ensure_success(&out, &format!("ping {src} -> {dst} in {ns}"))?;
            Ok(false)
        }
    }
}

/// A TCP handshake from `src` (any port) to `dst`; refused, unreachable or timed out is `false`.
pub fn tcp_connect(ns: &str, src: IpAddr, dst: SocketAddr) -> Result<bool> {
    netns::in_netns(ns, move || {
        let sock = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
        sock.bind(&SocketAddr::new(src, 0).into())
            .with_context(|| format!("bind {src} in the lab"))?;
        match sock.connect_timeout(&dst.into(), PROBE_TIMEOUT) {
            Ok(()) => Ok(true),
            Err(e) if no_answer(&e) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("tcp {src} -> {dst}")),
        }
    })
}

/// One datagram from `src` to the echo server at `dst`; true when the same bytes come back.
pub fn udp_echo(ns: &str, src: IpAddr, dst: SocketAddr) -> Result<bool> {
    netns::in_netns(ns, move || {
        let sock = UdpSocket::bind(SocketAddr::new(src, 0))
            .with_context(|| format!("bind {src} in the lab"))?;
        sock.connect(dst)?;
        sock.set_read_timeout(Some(PROBE_TIMEOUT))?;
        let tag = format!("gwlab probe {src} -> {dst}");
        sock.send(tag.as_bytes())?;
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(n) if &buf[..n] == tag.as_bytes() => return Ok(true),
                Ok(_) => continue,
                Err(e) if no_answer(&e) => return Ok(false),
                Err(e) => return Err(e).with_context(|| format!("udp {src} -> {dst}")),
            }
        }
        Ok(false)
    })
}

/// Errors that mean "the other side did not answer" rather than "the probe could not be sent".
fn no_answer(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::TimedOut
            | ErrorKind::WouldBlock
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
    )
}

/// A paced UDP flood from one source to several targets, in turn, on a thread inside a namespace.
/// Bounded: it stops by itself after `max_duration`.
pub struct UdpFlood {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<FloodReport>>>,
}

/// Datagrams sent to each target, in the order the targets were given.
#[derive(Clone, Debug)]
pub struct FloodReport {
    pub sent: Vec<(SocketAddr, u64)>,
    pub send_errors: u64,
    pub elapsed: Duration,
}

impl FloodReport {
    pub fn sent_to(&self, target: SocketAddr) -> u64 {
        self.sent
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, n)| n)
            .sum()
    }
}

impl UdpFlood {
    /// Starts sending `rate_per_target` datagrams a second to each target.
    pub fn start(
        ns: &str,
        src: IpAddr,
        targets: Vec<SocketAddr>,
        rate_per_target: u32,
        max_duration: Duration,
    ) -> Result<UdpFlood> {
        if rate_per_target == 0 || targets.is_empty() {
            bail!("a flood needs targets and a rate");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let handle = netns::spawn_in_netns(ns, "flood", move || {
            let sock = UdpSocket::bind(SocketAddr::new(src, 0))
                .with_context(|| format!("bind {src} in the lab"))?;
            let interval = Duration::from_secs(1) / rate_per_target;
            let start = Instant::now();
            let mut sent = vec![0u64; targets.len()];
            let mut send_errors = 0;
            let mut round: u32 = 0;
            while !stop_flag.load(Ordering::Relaxed) && start.elapsed() < max_duration {
                for (i, target) in targets.iter().enumerate() {
                    let payload = format!("gwlab flood {round}");
                    match sock.send_to(payload.as_bytes(), target) {
                        Ok(_) => sent[i] += 1,
                        Err(_) => send_errors += 1,
                    }
                }
                round += 1;
                // Pacing against the start time, so a slow round is caught up rather than drifting.
                let next = start + interval * round;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(FloodReport {
                sent: targets.into_iter().zip(sent).collect(),
                send_errors,
                elapsed: start.elapsed(),
            })
        })?;
        Ok(UdpFlood {
            stop,
            handle: Some(handle),
        })
    }

    pub fn stop(mut self) -> Result<FloodReport> {
        self.finish()
    }

    fn finish(&mut self) -> Result<FloodReport> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().context("flood already stopped")?;
        handle
            .join()
            .map_err(|_| anyhow!("flood thread panicked"))?
    }
}

impl Drop for UdpFlood {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.finish();
        }
    }
}

/// `ping -i <interval>` running in the background for a bounded time (its own deadline, -w).
pub struct PingFlood {
    child: Option<Child>,
    what: String,
}

impl PingFlood {
    pub fn start(
        ns: &str,
        src: IpAddr,
        dst: IpAddr,
        interval: Duration,
        deadline: Duration,
    ) -> Result<PingFlood> {
        let family = if dst.is_ipv4() { "-4" } else { "-6" };
        let child = netns::exec_in(ns, "ping")
            .args([
                family,
                "-n",
                "-q",
                "-i",
                &format!("{:.3}", interval.as_secs_f64()),
            ])
            .args([
                "-w",
                &deadline.as_secs().max(1).to_string(),
                "-I",
                &src.to_string(),
                &dst.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run ping (iputils-ping)")?;
        Ok(PingFlood {
            child: Some(child),
            what: format!("ping flood {src} -> {dst}"),
        })
    }

    /// Stops the flood (SIGINT, as a user would) and returns how many requests it sent.
    pub fn stop(mut self) -> Result<u64> {
        let child = self.child.take().context("ping flood already stopped")?;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().context("waiting for ping")?;
        let text = String::from_utf8_lossy(&out.stdout);
        transmitted(&text).with_context(|| {
            format!(
                "{}: no summary in {text:?} {:?}",
                self.what,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for PingFlood {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The "N packets transmitted" of a ping summary.
fn transmitted(summary: &str) -> Option<u64> {
    summary.lines().find_map(|line| {
        line.split_once(" packets transmitted")
            .and_then(|(n, _)| n.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_ping_summary() {
        let s = "--- 203.0.113.66 ping statistics ---\n523 packets transmitted, 0 received, 100% packet loss, time 5011ms\n";
        assert_eq!(super::transmitted(s), Some(523));
        assert_eq!(super::transmitted("nothing"), None);
    }
}
