//! Shared by the integration tests: the real collectors (nfcapd/nfdump, tshark), free ports,
//! known records, a certificate authority, and a TCP/TLS test collector.
#![allow(dead_code)] // each test binary uses part of this

use std::{
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gateway_common::Reason;
use gateway_flows::{EndReason, FlowRecord};

/// Panics unless `tool` is on PATH: these tests need the real thing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{tool}` (Debian package `{package}`: apt-get install -y --no-install-recommends {package}; scripts/setup.sh installs it)"
    );
}

pub fn require_root(what: &str) {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "{what} needs root (packet capture on the loopback interface)"
    );
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free TCP port")
        .port()
}

/// Flow start of the known records: 30 s ago, at a whole second plus 123 ms (a millisecond part on
/// purpose). Recent, because NetFlow v9 times count from the system's boot.
pub fn t0() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    (now - 30_000) / 1000 * 1000 + 123
}

fn record(
    t0: u64,
    (src, dst): (&str, &str),
    proto: u8,
    sport: u16,
    dport: u16,
    reason: Reason,
    n: u64,
) -> FlowRecord {
    let src: IpAddr = src.parse().expect("test address");
    let dst: IpAddr = dst.parse().expect("test address");
    let mut r = FlowRecord {
        src,
        dst,
        proto,
        sport,
        dport,
        ingress_ifindex: 2 + n as u32,
        egress_ifindex: if reason == Reason::Pass { 7 } else { 0 },
        packets: 10 + n,
        octets: 1000 * (n + 1) + 17,
        start_ms: t0 + 1000 * n,
        end_ms: t0 + 1000 * n + 4321,
        tcp_flags: if proto == 6 { 0x12 } else { 0 },
        reason,
        rule: match reason {
            Reason::Blocklist | Reason::BlocklistIn => "feed:spamhaus-drop".to_owned(),
            Reason::Pass => "system:npdb".to_owned(),
            r => r.as_str().to_owned(),
        },
        end_reason: if n.is_multiple_of(2) {
            EndReason::IdleTimeout
        } else {
            EndReason::ActiveTimeout
        },
        community_id: String::new(),
    };
    r.community_id = r.compute_community_id();
    r
}

/// v4 and v6; TCP, UDP, ICMP, ICMPv6 and a port-less protocol; forwarded and dropped.
pub fn known_records() -> Vec<FlowRecord> {
    let t0 = t0();
    let record = |src, dst, proto, sport, dport, reason, n| {
        record(t0, (src, dst), proto, sport, dport, reason, n)
    };
    vec![
        record("10.10.0.2", "10.200.1.10", 6, 40000, 443, Reason::Pass, 0),
        record(
            "10.10.0.2",
            "203.0.113.66",
            6,
            40001,
            80,
            Reason::Blocklist,
            1,
        ),
        record("10.10.0.2", "198.51.100.80", 17, 5353, 53, Reason::Pass, 2),
        record(
            "198.51.100.9",
            "10.10.0.2",
            17,
            123,
            123,
            Reason::Spoofed,
            3,
        ),
        record("10.10.0.2", "198.51.100.80", 1, 0, 0x0800, Reason::Pass, 4),
        record(
            "10.10.0.3",
            "203.0.113.10",
            1,
            0,
            0x0800,
            Reason::Isolated,
            5,
        ),
        record(
            "fd00:10::2",
            "2001:db8:200::10",
            6,
            50000,
            8443,
            Reason::Pass,
            6,
        ),
        record(
            "fd00:10::2",
            "2001:db8::66",
            17,
            5000,
            53,
            Reason::Blocklist,
            7,
        ),
        record("fd00:10::2", "2001:db8::80", 58, 0, 0x8000, Reason::Pass, 8),
        record(
            "2001:db8::bad",
            "fd00:10::2",
            58,
            0,
            0x8000,
            Reason::BlocklistIn,
            9,
        ),
        record("10.10.0.2", "198.51.100.1", 47, 0, 0, Reason::Malformed, 10),
    ]
}

/// Numbered copies of the known records (`packets` = the number), to check order and loss.
pub fn numbered(n: usize) -> Vec<FlowRecord> {
    let base = known_records();
    (0..n)
        .map(|i| {
            let mut r = base[i % base.len()].clone();
            r.packets = i as u64;
            r
        })
        .collect()
}

/// A running `nfcapd` on 127.0.0.1, writing to a private directory. It repeats every datagram to a
/// local socket (`-R`), which is how the test knows it has processed what was sent: nfcapd handles a
/// datagram completely before it receives (and repeats) the next one.
pub struct Nfcapd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    repeated: UdpSocket,
    probe: UdpSocket,
    log: PathBuf,
}

/// An IPFIX header with no sets, from observation domain 0xdead: nfcapd reads it and stores nothing.
/// Each carries a new number (in the sequence field), so a sync waits for its own marker.
pub fn marker() -> [u8; 16] {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut m = [0u8; 16];
    m[0..2].copy_from_slice(&10u16.to_be_bytes());
    m[2..4].copy_from_slice(&16u16.to_be_bytes());
    m[8..12].copy_from_slice(&n.to_be_bytes());
    m[12..16].copy_from_slice(&0xdeadu32.to_be_bytes());
    m
}

impl Nfcapd {
    pub fn start() -> Nfcapd {
        Nfcapd::start_on(free_udp_port())
    }

    pub fn start_on(port: u16) -> Nfcapd {
        require_tool("nfcapd", "nfdump");
        require_tool("nfdump", "nfdump");
        let dir = tempfile::tempdir().expect("tempdir");
        let flows = dir.path().join("flows");
        std::fs::create_dir(&flows).expect("flow dir");
        let repeated = UdpSocket::bind("127.0.0.1:0").expect("repeat socket");
        repeated
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let repeat_port = repeated.local_addr().expect("addr").port();
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        let log = dir.path().join("nfcapd.log");
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new("nfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-t", "3600"])
            .arg("-w")
            .arg(&flows)
            .args(["-R", &format!("127.0.0.1/{repeat_port}")])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start nfcapd");
        let mut n = Nfcapd {
            child,
            port,
            dir,
            repeated,
            probe,
            log,
        };
        n.sync(Duration::from_secs(20));
        n
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a marker and waits until nfcapd repeats it: everything sent before it is processed.
    pub fn sync(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 65536];
        loop {
            assert!(
                Instant::now() < deadline,
                "nfcapd did not answer within {limit:?}; its log:\n{}",
                self.log_text()
            );
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nfcapd exited ({status}); its log:\n{}", self.log_text());
            }
            let m = marker();
            self.probe.send_to(&m, self.addr()).expect("send marker");
            // Datagrams repeated before the marker belong to the export (or are older markers);
            // wait for this marker itself.
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                if let Ok(n) = self.repeated.recv(&mut buf)
                    && buf[..n] == m
                {
                    return;
                }
            }
        }
    }

    /// Waits until everything sent so far is processed, stops nfcapd (SIGTERM: it writes its file)
    /// and returns what `nfdump` prints for the flows it stored, one JSON object per flow.
    pub fn finish(mut self) -> Vec<serde_json::Value> {
        self.sync(Duration::from_secs(20));
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            assert!(Instant::now() < deadline, "nfcapd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        nfdump_json(&self.dir.path().join("flows"))
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nfdump -R dir -o json`, in UTC, as JSON values (one per flow).
pub fn nfdump_json(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("nfdump")
        .env("TZ", "UTC")
        .arg("-R")
        .arg(dir)
        .args(["-o", "json"])
        .output()
        .expect("run nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nfdump failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    if text.trim().is_empty() || text.contains("No matching flows") {
        return Vec::new();
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(v)) => v,
        Ok(other) => vec![other],
        Err(e) => panic!("nfdump JSON does not parse ({e}):\n{text}"),
    }
}

/// `ms` since the epoch as nfdump prints it in UTC: `2026-09-21T14:13:20.123`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// nfdump's TCP flag string: `CEUAPRSF`, a dot for each flag not set.
pub fn nfdump_flags(flags: u8) -> String {
    "CEUAPRSF"
        .chars()
        .enumerate()
        .map(|(i, c)| if flags & (0x80 >> i) != 0 { c } else { '.' })
        .collect()
}

/// A live packet capture on the loopback interface with `tshark` (needs root).
pub struct Capture {
    child: Child,
    file: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    /// Starts capturing packets matching the BPF `filter` and waits until the capture is live:
    /// tshark says "Capturing on" before it really is, so `probe` (which must send a packet the
    /// filter matches) is called until one shows up in the file.
    pub fn start(filter: &str, probe: impl Fn()) -> Capture {
        require_tool("tshark", "tshark");
        require_root("capturing with tshark");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("capture.pcapng");
        let log = dir.path().join("tshark.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-f", filter, "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start tshark");
        let mut c = Capture {
            child,
            file,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&c.log).unwrap_or_default();
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("tshark exited ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "tshark did not start capturing:\n{text}"
            );
            if text.contains("Capturing on") {
                probe();
                std::thread::sleep(Duration::from_millis(100));
                if c.packets() > 0 {
                    return c;
                }
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Packets in the capture file so far.
    fn packets(&self) -> usize {
        Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .output()
            .map(|o| {
                o.stdout
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
            })
            .unwrap_or(0)
    }

    /// The flow records tshark decodes from the capture so far (`decode_as` e.g.
    /// `tcp.port==4739,cflow`), in capture order, each as the JSON object of its fields.
    pub fn flows(&self, decode_as: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args([
                "-d",
                decode_as,
                "-Y",
                "cflow",
                "-T",
                "json",
                "--no-duplicate-keys",
            ])
            .output()
            .expect("run tshark");
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Vec::new();
        }
        let packets: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            // The capture is being written: a packet cut short ends the JSON early. Try again later.
            Err(_) => return Vec::new(),
        };
        let mut flows = Vec::new();
        for p in packets.as_array().into_iter().flatten() {
            let cflow = &p["_source"]["layers"]["cflow"];
            // Several PDUs in one TCP segment make an array of cflow trees.
            let pdus: Vec<&serde_json::Value> = match cflow {
                serde_json::Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            for pdu in pdus {
                flows.extend(numbered_children(pdu, "Set ").into_iter().flat_map(|set| {
                    numbered_children(set, "Flow ")
                        .into_iter()
                        .filter_map(|f| f.as_object().cloned())
                }));
            }
        }
        flows
    }

    /// What is in the capture (one line per packet) and tshark's log: for failure messages.
    pub fn summary(&self, decode_as: &str) -> String {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args(["-d", decode_as])
            .output()
            .expect("run tshark");
        format!(
            "capture:\n{}{}\ntshark log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Waits (up to `limit`) until at least `n` flows are in the capture, and returns them.
    pub fn wait_flows(
        &self,
        decode_as: &str,
        n: usize,
        limit: Duration,
    ) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let deadline = Instant::now() + limit;
        loop {
            let flows = self.flows(decode_as);
            if flows.len() >= n || Instant::now() > deadline {
                return flows;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The children of a tshark JSON tree whose keys start with `prefix` and a number ("Set 2 [id=256]
/// (6 flows)", "Flow 10"), in numeric order (JSON objects do not keep order here).
fn numbered_children<'a>(v: &'a serde_json::Value, prefix: &str) -> Vec<&'a serde_json::Value> {
    let mut kids: Vec<(u64, &serde_json::Value)> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?;
            let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
            Some((digits.parse().ok()?, v))
        })
        .collect();
    kids.sort_by_key(|(n, _)| *n);
    kids.into_iter().map(|(_, v)| v).collect()
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A string field of a tshark flow.
pub fn field<'a>(flow: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> &'a str {
    flow.get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("tshark flow has no {name}: {flow:#?}"))
}

/// The text of a colon-separated hex string as tshark prints unknown enterprise elements.
pub fn hex_text(hex: &str) -> String {
    let bytes: Vec<u8> = hex
        .split(':')
        .filter(|s| !s.is_empty())
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    String::from_utf8(bytes).expect("utf-8")
}

/// A CA, a collector certificate (`collector.test`) and a gateway client certificate, as PEM files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server: gateway_tls::Identity,
    pub client: gateway_tls::Identity,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p
    };
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "SOC test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .and_then(|p| p.signed_by(&key, &issuer))
            .expect("leaf");
        gateway_tls::Identity {
            cert: write(&format!("{name}.pem"), &cert.pem()),
            key: write(&format!("{name}.key"), &key.serialize_pem()),
        }
    };
    let server = leaf("collector.test");
    let client = leaf("gateway.test");
    let ca = write("ca.pem", &ca.pem());
    Pki {
        dir,
        ca,
        server,
        client,
    }
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<(usize, Vec<u8>)>>>;

/// An IPFIX collector on TCP or TLS: frames the stream into messages by their length field, keeps
/// them (with the number of the connection they came on) and can relay each one as a UDP datagram
/// (to nfcapd, which only listens on UDP). Collectors send nothing back.
pub struct StreamCollector {
    pub addr: SocketAddr,
    messages: Received,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StreamCollector {
    pub async fn start(
        addr: SocketAddr,
        tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
        relay_to: Option<SocketAddr>,
    ) -> StreamCollector {
        use tokio::io::AsyncReadExt as _;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(addr).expect("bind collector");
        let listener = socket.listen(16).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let messages: Received = Default::default();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let relay = relay_to.map(|to| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
            (s, to)
        });
        let relay = std::sync::Arc::new(relay);
        let (msgs, conns) = (messages.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let id = conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (msgs, relay, tls) = (msgs.clone(), relay.clone(), tls.clone());
                tasks.spawn(async move {
                    let mut stream: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match tls {
                        Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                            Ok(s) => Box::new(s),
                            Err(_) => return,
                        },
                        None => Box::new(tcp),
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    loop {
                        let n = match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(len) = gateway_flows::decode::ipfix_message_len(&buf) {
                            if len < 16 || buf.len() < len {
                                break;
                            }
                            let msg: Vec<u8> = buf.drain(..len).collect();
                            if let Some((s, to)) = relay.as_ref() {
                                s.send_to(&msg, to).expect("relay");
                            }
                            msgs.lock().expect("lock").push((id, msg));
                        }
                    }
                });
            }
        });
        StreamCollector {
            addr,
            messages,
            connections,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every message so far with its connection number.
    pub fn messages(&self) -> Vec<(usize, Vec<u8>)> {
        self.messages.lock().expect("lock").clone()
    }

    /// The records received so far, in arrival order (templates per connection, as a collector
    /// keeps them per session).
    pub fn records(&self) -> Vec<FlowRecord> {
        let mut decoders = std::collections::HashMap::new();
        let mut out = Vec::new();
        for (conn, msg) in self.messages() {
            let d = decoders
                .entry(conn)
                .or_insert_with(gateway_flows::decode::Decoder::new);
            let m = d
                .decode(&msg)
                .expect("collector got an undecodable message");
            out.extend(
                m.flows
                    .iter()
                    .map(|f| f.to_record().expect("complete record")),
            );
        }
        out
    }

    /// Waits (up to `limit`) until `n` records have arrived and returns what did.
    pub async fn wait_records(&self, n: usize, limit: Duration) -> Vec<FlowRecord> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.records();
            if r.len() >= n || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the listener and every connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every field of one IPFIX record as tshark decodes it.
pub fn check_tshark_flow(f: &serde_json::Map<String, serde_json::Value>, r: &FlowRecord) {
    let (src, dst) = match r.src {
        std::net::IpAddr::V4(_) => ("cflow.srcaddr", "cflow.dstaddr"),
        std::net::IpAddr::V6(_) => ("cflow.srcaddrv6", "cflow.dstaddrv6"),
    };
    assert_eq!(field(f, src), r.src.to_string(), "{f:#?}");
    assert_eq!(field(f, dst), r.dst.to_string(), "{f:#?}");
    assert_eq!(field(f, "cflow.protocol"), r.proto.to_string());
    assert_eq!(field(f, "cflow.srcport"), r.sport.to_string());
    assert_eq!(field(f, "cflow.dstport"), r.dport.to_string());
    assert_eq!(field(f, "cflow.packets"), r.packets.to_string());
    assert_eq!(field(f, "cflow.octets"), r.octets.to_string());
    assert_eq!(field(f, "cflow.inputint"), r.ingress_ifindex.to_string());
    assert_eq!(field(f, "cflow.outputint"), r.egress_ifindex.to_string());
    let times = &f["cflow.timedelta_tree"];
    let start = times["cflow.abstimestart"].as_str().unwrap_or_default();
    let end = times["cflow.abstimeend"].as_str().unwrap_or_default();
    // tshark prints "Sep 21, 2026 14:13:20.123000000 UTC"; compare the time of day to the ms.
    let tod = |ms: u64| utc(ms)[11..].to_owned();
    assert!(
        start.contains(&format!("{}000000 UTC", tod(r.start_ms))),
        "{start} vs {r:?}"
    );
    assert!(
        end.contains(&format!("{}000000 UTC", tod(r.end_ms))),
        "{end} vs {r:?}"
    );
    let fwd = &f["Forwarding Status"];
    match r.reason.verdict() {
        gateway_common::Verdict::Pass => {
            assert_eq!(fwd["cflow.forwarding_status"], "1", "forwarded: {fwd}")
        }
        gateway_common::Verdict::Drop => {
            assert_eq!(fwd["cflow.forwarding_status"], "2", "dropped: {fwd}");
            let code = gateway_flows::fields::forwarding_status(r.reason) & 0x3f;
            assert_eq!(
                fwd["cflow.forwarding_status_drop_code"],
                code.to_string().as_str()
            );
        }
    }
    let event = field(f, "cflow.firewall_event");
    match r.reason {
        gateway_common::Reason::Pass => assert!(event == "2" || event == "5", "{event}"),
        _ => assert_eq!(event, "3", "flow denied"),
    }
    assert_eq!(
        field(f, "cflow.flow_end_reason"),
        r.end_reason.code().to_string()
    );
    if let Some((ty, code)) = r.icmp_type_code() {
        let key = match r.src {
            std::net::IpAddr::V4(_) => "cflow.icmp_type_code_ipv4",
            std::net::IpAddr::V6(_) => "cflow.icmp_ipv6_type",
        };
        let v = field(f, key);
        let want = if key.ends_with("ipv4") {
            format!("0x{:04x}", u16::from_be_bytes([ty, code]))
        } else {
            ty.to_string()
        };
        assert_eq!(v, want, "{f:#?}");
    }
    let strings: Vec<String> = f["cflow.enterprise_private_entry"]
        .as_array()
        .expect("three enterprise strings")
        .iter()
        .map(|v| hex_text(v.as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        strings,
        [r.reason.as_str(), &r.rule, &r.community_id],
        "gatewayDropReason, gatewayPolicyRule, gatewayCommunityId"
    );
}

/// nfdump's flow with the record's addresses, ports and protocol (each record's tuple is unique).
pub fn find<'a>(flows: &'a [serde_json::Value], r: &FlowRecord) -> &'a serde_json::Value {
    let (s, d) = match r.src {
        std::net::IpAddr::V4(_) => ("src4_addr", "dst4_addr"),
        std::net::IpAddr::V6(_) => ("src6_addr", "dst6_addr"),
    };
    let hits: Vec<&serde_json::Value> = flows
        .iter()
        .filter(|f| {
            f[s] == r.src.to_string().as_str()
                && f[d] == r.dst.to_string().as_str()
                && f["proto"] == u64::from(r.proto)
                && match r.icmp_type_code() {
                    Some((ty, code)) => f["icmp_type"] == ty && f["icmp_code"] == code,
                    None => f["src_port"] == r.sport && f["dst_port"] == r.dport,
                }
        })
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "exactly one nfdump flow for {r:?}; nfdump has:\n{flows:#?}"
    );
    hits[0]
}

/// What both formats must show in nfdump: tuple, counters, times to the millisecond, interfaces,
/// TCP flags.
pub fn check_common(flows: &[serde_json::Value], records: &[FlowRecord]) {
    assert_eq!(flows.len(), records.len(), "nfdump flows:\n{flows:#?}");
    for r in records {
        let f = find(flows, r);
        assert_eq!(f["in_packets"], r.packets, "{r:?}\n{f:#}");
        assert_eq!(f["in_bytes"], r.octets, "{r:?}\n{f:#}");
        assert_eq!(f["first"], utc(r.start_ms).as_str(), "{r:?}\n{f:#}");
        assert_eq!(f["last"], utc(r.end_ms).as_str(), "{r:?}\n{f:#}");
        assert_eq!(f["input_snmp"], r.ingress_ifindex, "{r:?}\n{f:#}");
        assert_eq!(f["output_snmp"], r.egress_ifindex, "{r:?}\n{f:#}");
        if r.icmp_type_code().is_none() {
            assert_eq!(
                f["tcp_flags"],
                nfdump_flags(r.tcp_flags).as_str(),
                "{r:?}\n{f:#}"
            );
        }
    }
}
