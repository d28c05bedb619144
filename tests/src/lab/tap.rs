//! A packet tap on a leaf's `eth0`: counts every IP packet the leaf *received* from the gateway, by
//! source, destination and L4 kind. It is the witness for "nothing of this reached the other side",
//! independent of whether any server answered.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

use super::worker::{Worker, poll_readable};

/// What a packet carried above IP, as far as the tests care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    Tcp {
        dport: u16,
        syn: bool,
    },
    Udp {
        dport: u16,
    },
    /// ICMP (v4) with its type.
    Icmp {
        kind: u8,
    },
    /// ICMPv6 with its type.
    Icmpv6 {
        kind: u8,
    },
    /// Any other protocol, or a non-first fragment (no L4 header).
    Other {
        proto: u8,
    },
}

impl L4 {
    /// An ICMP or ICMPv6 echo request.
    pub fn is_echo_request(self) -> bool {
        matches!(self, L4::Icmp { kind: 8 } | L4::Icmpv6 { kind: 128 })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PacketKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
}

/// Parses an Ethernet frame (no VLAN tags: veth in the lab) into a key; None for non-IP or runts.
pub fn parse_frame(frame: &[u8]) -> Option<PacketKey> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let proto = *ip.get(9)?;
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
            let frag_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff;
            let l4 = if frag_offset != 0 {
                L4::Other { proto }
            } else {
                parse_l4(proto, ip.get(ihl..)?)
            };
            Some(PacketKey {
                src: src.into(),
                dst: dst.into(),
                l4,
            })
        }
        0x86dd => {
            let next = *ip.get(6)?;
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
            // The lab sends no extension headers; anything else is counted by its next-header value.
            Some(PacketKey {
                src: src.into(),
                dst: dst.into(),
                l4: parse_l4(next, ip.get(40..)?),
            })
        }
        _ => None,
    }
}

fn parse_l4(proto: u8, l4: &[u8]) -> L4 {
    let port = |at: usize| l4.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match (proto, port(2), l4.first()) {
        (6, Some(dport), _) => L4::Tcp {
            dport,
            syn: l4.get(13).is_some_and(|f| f & 0x12 == 0x02),
        },
        (17, Some(dport), _) => L4::Udp { dport },
        (1, _, Some(&kind)) => L4::Icmp { kind },
        (58, _, Some(&kind)) => L4::Icmpv6 { kind },
        _ => L4::Other { proto },
    }
}

pub type Counts = HashMap<PacketKey, u64>;

/// The tap of one leaf.
pub struct Tap {
    counts: Arc<Mutex<Counts>>,
    kernel_drops: Arc<AtomicU64>,
    worker: Worker,
}

impl Tap {
    /// Starts counting what arrives on `dev` inside `ns`.
    pub fn start(ns: &str, dev: &'static str) -> Result<Tap> {
        let counts = Arc::new(Mutex::new(Counts::new()));
        let kernel_drops = Arc::new(AtomicU64::new(0));
        let (c, d) = (Arc::clone(&counts), Arc::clone(&kernel_drops));
        let worker = Worker::start(ns, "tap", move |mut ctx| {
            let sock = open_packet_socket(dev)?;
            ctx.ready();
            let mut frame = vec![0u8; 65536];
            let mut fds = [libc::pollfd {
                fd: sock.as_raw_fd(),
                events: 0,
                revents: 0,
            }];
            while !ctx.should_stop() {
                while let Some(len) = recv_incoming(&sock, &mut frame)? {
                    if let Some(key) = parse_frame(&frame[..len]) {
                        *c.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(key)
                            .or_default() += 1;
                    }
                }
                d.fetch_add(take_kernel_drops(&sock)?, Ordering::Relaxed);
                ctx.drained();
                poll_readable(&mut fds)?;
            }
            Ok(())
        })?;
        Ok(Tap {
            counts,
            kernel_drops,
            worker,
        })
    }

    /// Packets matching `pred` received so far (after catching up with the kernel's queue).
    pub fn count(&self, pred: impl Fn(&PacketKey) -> bool) -> Result<u64> {
        self.worker.catch_up()?;
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        Ok(counts.iter().filter(|(k, _)| pred(k)).map(|(_, n)| n).sum())
    }

    /// Packets the kernel could not queue to the tap (socket buffer full). A non-zero value means a
    /// count of zero proves nothing.
    pub fn kernel_drops(&self) -> Result<u64> {
        self.worker.catch_up()?;
        Ok(self.kernel_drops.load(Ordering::Relaxed))
    }

    pub fn stop(&mut self) -> Result<()> {
        self.worker.stop()
    }
}

/// An AF_PACKET socket bound to `dev` in the calling thread's namespace, non-blocking, with a large
/// receive buffer so floods are counted whole.
fn open_packet_socket(dev: &str) -> Result<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: `fd` is a freshly created descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev).context("interface name")?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("if_nametoindex({dev})"));
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value that is then filled in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = all;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&raw const sll).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("bind AF_PACKET to {dev}"));
    }
    let bytes: libc::c_int = 32 << 20;
    // SAFETY: the option value is a c_int that lives across the call; its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVBUFFORCE on the tap");
    }
    // Packets queued before the bind may be from other interfaces; start from a clean count.
    take_kernel_drops(&sock)?;
    let mut scratch = [0u8; 64];
    while recv_any(&sock, &mut scratch)?.is_some() {}
    Ok(sock)
}

/// One frame the interface received (outgoing copies are skipped); None when the queue is empty.
fn recv_incoming(sock: &OwnedFd, buf: &mut [u8]) -> Result<Option<usize>> {
    loop {
        match recv_any(sock, buf)? {
            None => return Ok(None),
            Some((_, pkttype)) if pkttype == libc::PACKET_OUTGOING => continue,
            Some((len, _)) => return Ok(Some(len)),
        }
    }
}

/// One frame (length, packet type), or None when nothing is queued.
fn recv_any(sock: &OwnedFd, buf: &mut [u8]) -> Result<Option<(usize, u8)>> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` and `from` are valid for writes of the sizes passed; recvfrom writes at most that.
    let n = unsafe {
        libc::recvfrom(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
            (&raw mut from).cast::<libc::sockaddr>(),
            &mut from_len,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        return match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
            _ => Err(err).context("recvfrom on the tap"),
        };
    }
    // MSG_TRUNC returns the real length; never index past what was copied.
    Ok(Some(((n as usize).min(buf.len()), from.sll_pkttype)))
}

/// Reads (and resets) the socket's drop counter.
fn take_kernel_drops(sock: &OwnedFd) -> Result<u64> {
    // SAFETY: tpacket_stats is plain old data; all-zero is a valid value.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` is valid for writes of `len` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut stats).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        bail!("PACKET_STATISTICS: {}", std::io::Error::last_os_error());
    }
    Ok(u64::from(stats.tp_drops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn parses_ipv4_tcp_syn() {
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 10, 0, 2, 10, 200, 1, 10,
        ];
        let mut tcp = vec![0u8; 20];
        tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        ip.extend_from_slice(&tcp);
        let key = parse_frame(&eth(0x0800, &ip)).expect("parses");
        assert_eq!(key.src, IpAddr::from([10, 10, 0, 2]));
        assert_eq!(key.dst, IpAddr::from([10, 200, 1, 10]));
        assert_eq!(
            key.l4,
            L4::Tcp {
                dport: 443,
                syn: true
            }
        );
    }

    #[test]
    fn parses_ipv6_echo_request_and_ignores_non_ip() {
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        ip.extend_from_slice(&[0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x66,
        ]);
        ip.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
        let key = parse_frame(&eth(0x86dd, &ip)).expect("parses");
        assert!(key.l4.is_echo_request());
        assert_eq!(parse_frame(&eth(0x0806, &[0u8; 28])), None);
        assert_eq!(parse_frame(&[0u8; 10]), None);
    }

    #[test]
    fn non_first_fragment_has_no_ports() {
        let ip = [
            0x45, 0, 0, 28, 0, 0, 0, 10, 64, 17, 0, 0, 10, 10, 0, 2, 203, 0, 113, 66, 1, 2, 3, 4,
            5, 6, 7, 8,
        ];
        let key = parse_frame(&eth(0x0800, &ip)).expect("parses");
        assert_eq!(key.l4, L4::Other { proto: 17 });
    }
}
