//! The servers of a leaf: TCP listeners and UDP sockets on every service address of the namespace,
//! counting each accepted connection and each datagram by local address/port and peer address.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::worker::{Worker, poll_readable};

/// TCP ports listened on: 22 (the forbidden one for shared systems), 80, 443, 8443.
pub const TCP_PORTS: [u16; 4] = [22, 80, 443, 8443];
/// UDP port whose datagrams are echoed back.
pub const UDP_ECHO_PORT: u16 = 5353;
/// UDP port whose datagrams are only counted (floods go here so no replies flow back).
pub const UDP_SINK_PORT: u16 = 9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One thing a server saw: a connection accepted or a datagram received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hit {
    pub proto: Proto,
    pub local: SocketAddr,
    pub peer: IpAddr,
}

pub type Hits = HashMap<Hit, u64>;

pub struct Servers {
    hits: Arc<Mutex<Hits>>,
    worker: Worker,
}

enum Socket {
    Listener(TcpListener),
    Udp { sock: UdpSocket, echo: bool },
}

impl Servers {
    /// Binds every port on every address (inside `ns`) and starts serving.
    pub fn start(ns: &str, addresses: Vec<IpAddr>) -> Result<Servers> {
        let hits = Arc::new(Mutex::new(Hits::new()));
        let h = Arc::clone(&hits);
        let worker = Worker::start(ns, "servers", move |mut ctx| {
            let sockets = bind_all(&addresses)?;
            ctx.ready();
            let mut fds: Vec<libc::pollfd> = sockets
                .iter()
                .map(|s| libc::pollfd {
                    fd: match s {
                        Socket::Listener(l) => l.as_raw_fd(),
                        Socket::Udp { sock, .. } => sock.as_raw_fd(),
                    },
                    events: 0,
                    revents: 0,
                })
                .collect();
            let mut buf = vec![0u8; 65536];
            while !ctx.should_stop() {
                for socket in &sockets {
                    serve_queued(socket, &mut buf, &h)?;
                }
                ctx.drained();
                poll_readable(&mut fds)?;
            }
            Ok(())
        })?;
        Ok(Servers { hits, worker })
    }

    /// Hits matching `pred` so far (after catching up with the kernel's queues).
    pub fn count(&self, pred: impl Fn(&Hit) -> bool) -> Result<u64> {
        self.worker.catch_up()?;
        let hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        Ok(hits.iter().filter(|(k, _)| pred(k)).map(|(_, n)| n).sum())
    }

    pub fn stop(&mut self) -> Result<()> {
        self.worker.stop()
    }
}

fn bind_all(addresses: &[IpAddr]) -> Result<Vec<Socket>> {
    let mut sockets = Vec::new();
    for &ip in addresses {
        for port in TCP_PORTS {
            let l =
                TcpListener::bind((ip, port)).with_context(|| format!("listen on {ip}:{port}"))?;
            l.set_nonblocking(true)?;
            sockets.push(Socket::Listener(l));
        }
        for (port, echo) in [(UDP_ECHO_PORT, true), (UDP_SINK_PORT, false)] {
            let sock =
                UdpSocket::bind((ip, port)).with_context(|| format!("bind udp {ip}:{port}"))?;
            sock.set_nonblocking(true)?;
            socket2::SockRef::from(&sock)
                .set_recv_buffer_size(8 << 20)
                .context("SO_RCVBUF")?;
            sockets.push(Socket::Udp { sock, echo });
        }
    }
    Ok(sockets)
}

/// Accepts every pending connection (closing it at once: the handshake is what counts) or reads every
/// pending datagram (echoing it back on the echo port).
fn serve_queued(socket: &Socket, buf: &mut [u8], hits: &Mutex<Hits>) -> Result<()> {
    let record = |proto, local, peer: SocketAddr| {
        let hit = Hit {
            proto,
            local,
            peer: peer.ip(),
        };
        *hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(hit)
            .or_default() += 1;
    };
    match socket {
        Socket::Listener(l) => loop {
            match l.accept() {
                Ok((stream, peer)) => record(Proto::Tcp, stream.local_addr()?, peer),
                Err(e) if would_block(&e) => return Ok(()),
                // A connection reset before accept is the client's business.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(e).context("accept"),
            }
        },
        Socket::Udp { sock, echo } => loop {
            match sock.recv_from(buf) {
                Ok((len, peer)) => {
                    record(Proto::Udp, sock.local_addr()?, peer);
                    if *echo {
                        // Best effort, like any echo service: a lost echo is what a probe measures.
                        let _ = sock.send_to(&buf[..len], peer);
                    }
                }
                Err(e) if would_block(&e) => return Ok(()),
                // An ICMP error for an earlier echo surfaces here; it says nothing about this socket.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e).context("recv_from"),
            }
        },
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}
