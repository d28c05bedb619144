//! Flow export: what encoding and sending flow records costs, per format.
//!
//! - encode-only: records/s through the encoder alone (the baseline), and the octets per record on
//!   the wire (headers and templates included);
//! - exported: records/s through the real exporter task (queue, encoder, UDP socket) to a loopback
//!   collector thread that decodes every datagram. Nothing may be lost: the producer keeps the
//!   exporter's queue short (a full queue drops, by design) and the datagrams in flight within the
//!   collector's socket buffer, and the run fails unless the collector counts every record and the
//!   exporter's datagram and byte counts.
//!
//! Figures are printed, never asserted.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use gateway_common::Reason;
use gateway_flows::{
    CollectorConfig, Encoded, EndReason, Exporter, FlowEncoder, FlowRecord, Format, Transport,
    decode::Decoder, ipfix::UDP_MAX_MESSAGE,
};

const RECORDS: usize = 1_000_000;
/// Records per batch handed to the exporter (a poll of the flow map).
const BATCH: usize = 1_000;
/// Collector socket buffer asked for (granted as root: SO_RCVBUFFORCE).
const RCVBUF: usize = 64 << 20;
/// Conservative kernel accounting (skb truesize) of one loopback datagram of up to 1400 octets.
const TRUESIZE: u64 = 8192;

pub fn run() -> anyhow::Result<()> {
    let batch: Arc<[FlowRecord]> = Arc::from(records(BATCH));
    println!(
        "\nflow export: {RECORDS} records in batches of {BATCH}, UDP messages of at most {UDP_MAX_MESSAGE} octets, to a loopback collector"
    );
    println!(
        "  {:<11} {:>20} {:>25} {:>15} {:>11}",
        "format", "encode-only rec/s", "exported rec/s, 0 lost", "octets/record", "datagrams"
    );
    for (name, format) in [("IPFIX", Format::Ipfix), ("NetFlow v9", Format::NetflowV9)] {
        let (encode_rate, bytes) = encode_only(format, &batch);
        let exported = export(format, &batch).with_context(|| format!("{name} export"))?;
        println!(
            "  {:<11} {:>20.0} {:>25.0} {:>15.1} {:>11}",
            name,
            encode_rate,
            exported.rate,
            bytes as f64 / RECORDS as f64,
            exported.datagrams
        );
    }
    Ok(())
}

/// `n` records of a typical mix: three quarters IPv4, TCP/UDP/ICMP, a fifth dropped.
fn records(n: usize) -> Vec<FlowRecord> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (0..n)
        .map(|i| {
            let i32_ = i as u32;
            let (src, dst) = if i % 4 == 3 {
                (
                    IpAddr::V6(Ipv6Addr::new(
                        0xfd00,
                        0x10,
                        0,
                        0,
                        0,
                        0,
                        0,
                        (i % 200) as u16 + 2,
                    )),
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16)),
                )
            } else {
                (
                    IpAddr::V4(Ipv4Addr::new(10, 10, 0, (i % 200) as u8 + 2)),
                    IpAddr::V4(Ipv4Addr::from(0xc633_6400 + i32_)),
                )
            };
            let (proto, sport, dport) = match i % 10 {
                0..=5 => (6, 40000 + (i % 20000) as u16, 443),
                6..=8 => (17, 50000 + (i % 10000) as u16, 53),
                _ if src.is_ipv4() => (1, 0, 0x0800),
                _ => (58, 0, 0x8000),
            };
            let reason = match i % 10 {
                0 => Reason::Blocklist,
                5 => Reason::NotAllowed,
                _ => Reason::Pass,
            };
            let mut r = FlowRecord {
                src,
                dst,
                proto,
                sport,
                dport,
                ingress_ifindex: 2,
                egress_ifindex: if reason == Reason::Pass { 3 } else { 0 },
                packets: 1 + (i % 500) as u64,
                octets: 60 + (i % 500) as u64 * 900,
                start_ms: now - 60_000,
                end_ms: now - 1_000,
                tcp_flags: if proto == 6 { 0x1b } else { 0 },
                reason,
                rule: match reason {
                    Reason::Blocklist => "feed:spamhaus-drop".to_owned(),
                    Reason::NotAllowed => "system:population-db-api".to_owned(),
                    r => r.as_str().to_owned(),
                },
                end_reason: if i % 3 == 0 {
                    EndReason::ActiveTimeout
                } else {
                    EndReason::IdleTimeout
                },
                community_id: String::new(),
            };
            r.community_id = r.compute_community_id();
            r
        })
        .collect()
}

/// (records/s, octets) of encoding `RECORDS` records.
fn encode_only(format: Format, batch: &[FlowRecord]) -> (f64, u64) {
    let mut encoder = FlowEncoder::new(format, 1, UDP_MAX_MESSAGE);
    let mut out = Encoded::new();
    let mut bytes = 0u64;
    let start = Instant::now();
    for _ in 0..RECORDS / BATCH {
        out.clear();
        encoder.encode(batch, SystemTime::now(), &mut out);
        bytes += out.bytes().len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&out);
    (RECORDS as f64 / secs, bytes)
}

struct Exported {
    rate: f64,
    datagrams: u64,
}

/// Counts what reaches a UDP socket: datagrams, octets and the records in them (decoded).
struct Collector {
    addr: SocketAddr,
    datagrams: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<(u64, u64)>>,
}

impl Collector {
    fn start() -> anyhow::Result<(Collector, usize)> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("collector socket")?;
        let rcvbuf = grow_rcvbuf(&socket)?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let addr = socket.local_addr()?;
        let datagrams = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (datagrams.clone(), stop.clone());
        let thread = std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
            let mut decoder = Decoder::new();
            let mut buf = vec![0u8; 65536];
            let (mut bytes, mut records) = (0u64, 0u64);
            while !halt.load(Ordering::Relaxed) {
                let n = match socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e).context("collector recv"),
                };
                let msg = decoder.decode(&buf[..n]).context("collector decode")?;
                records += msg.flows.len() as u64;
                bytes += n as u64;
                // Counted once decoded: the producer's window covers the decoding too.
                count.fetch_add(1, Ordering::Release);
            }
            Ok((bytes, records))
        });
        Ok((
            Collector {
                addr,
                datagrams,
                stop,
                thread,
            },
            rcvbuf,
        ))
    }

    fn datagrams(&self) -> u64 {
        self.datagrams.load(Ordering::Acquire)
    }

    /// (octets, records) received.
    fn finish(self) -> anyhow::Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => bail!("collector thread panicked"),
        }
    }
}

/// Asks for [`RCVBUF`] octets of receive buffer (past net.core.rmem_max when root) and returns what
/// the kernel granted.
fn grow_rcvbuf(socket: &UdpSocket) -> anyhow::Result<usize> {
    let size = RCVBUF as libc::c_int;
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let sock = socket2::SockRef::from(socket);
    if rc != 0 {
        // Not root: the ordinary option, capped by net.core.rmem_max (the window shrinks with it).
        sock.set_recv_buffer_size(RCVBUF).context("SO_RCVBUF")?;
    }
    Ok(sock.recv_buffer_size()?)
}

fn export(format: Format, batch: &Arc<[FlowRecord]>) -> anyhow::Result<Exported> {
    let (collector, rcvbuf) = Collector::start()?;
    // Datagrams that may be unread at the collector at once, with half the buffer to spare.
    let window = (rcvbuf as u64 / TRUESIZE / 2).max(4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let (elapsed, stats) = runtime.block_on(async {
        let exporter = Exporter::spawn(CollectorConfig {
            name: "bench".to_owned(),
            format,
            transport: Transport::Udp,
            addr: collector.addr,
            template_refresh: Duration::from_secs(600),
            observation_domain: 1,
            spool: None,
        })?;
        let start = Instant::now();
        let mut submitted = 0u64;
        while submitted < RECORDS as u64 {
            // Pace: a short queue (send never waits; a full queue would drop) and no more datagrams
            // in flight than the collector's buffer holds.
            loop {
                let s = exporter.stats();
                let queued = submitted - s.records_sent - s.records_lost();
                let in_flight = s.messages_sent.saturating_sub(collector.datagrams());
                if queued < 8 * BATCH as u64 && in_flight < window {
                    break;
                }
                tokio::task::yield_now().await;
            }
            if !exporter.send(batch.clone()) {
                bail!("the exporter's queue was full despite the pacing");
            }
            submitted += BATCH as u64;
        }
        let stats = exporter.shutdown().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while collector.datagrams() < stats.messages_sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        anyhow::Ok((start.elapsed(), stats))
    })?;
    let datagrams = collector.datagrams();
    let (bytes, records) = collector.finish()?;
    if stats.records_lost() != 0
        || records != RECORDS as u64
        || datagrams != stats.messages_sent
        || bytes != stats.bytes_sent
    {
        bail!(
            "records were lost: the collector got {records} records in {datagrams} datagrams ({bytes} octets); the exporter sent {} records in {} datagrams ({} octets) and counted {} lost",
            stats.records_sent,
            stats.messages_sent,
            stats.bytes_sent,
            stats.records_lost()
        );
    }
    Ok(Exported {
        rate: RECORDS as f64 / elapsed.as_secs_f64(),
        datagrams,
    })
}
