//! A real syslog receiver for the tests: Debian's rsyslogd, run as our own child process with its
//! own configuration, work directory and pid file (the system's rsyslog is never touched), an
//! imtcp input on 127.0.0.1:<free port>, plain or TLS (OpenSSL driver, client certificates
//! required), writing every message it parsed as one JSON object per line: the RFC 5424 header
//! fields as rsyslog understood them and the structured data as its mmpstrucdata module parsed it.
#![allow(dead_code)] // each test binary uses part of it
use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use gateway_alerts::Identity;

/// Debian packages the tests need.
pub const PACKAGES: &str = "rsyslog rsyslog-openssl";

/// How long a wait for something that must happen may take before the test fails. Generous: it
/// only bounds a test that would otherwise hang, it measures nothing.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn rsyslogd() -> PathBuf {
    let found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "rsyslogd is missing: this test needs a real syslog receiver; install it with \
             `apt-get install -y --no-install-recommends {PACKAGES}`"
        )
    })
}

fn ossl_driver_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|d| Path::new(d).join("rsyslog/lmnsd_ossl.so").exists())
}

/// A port on 127.0.0.1 nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Server side of the TLS receiver.
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificate names rsyslog accepts (x509/name).
    pub permitted_peer: String,
}

pub struct Rsyslog {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    out: PathBuf,
}

impl Rsyslog {
    /// Plain TCP receiver (not started).
    pub fn tcp() -> Rsyslog {
        Rsyslog::new(None)
    }

    /// TLS receiver demanding a client certificate (not started).
    pub fn tls(tls: ServerTls) -> Rsyslog {
        Rsyslog::new(Some(tls))
    }

    fn new(tls: Option<ServerTls>) -> Rsyslog {
        rsyslogd();
        if tls.is_some() {
            assert!(
                ossl_driver_present(),
                "rsyslog's OpenSSL driver (lmnsd_ossl.so) is missing; install it with \
                 `apt-get install -y --no-install-recommends {PACKAGES}`"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        let out = dir.path().join("received.jsonl");
        let port = free_port();
        let (driver_globals, imtcp) = match &tls {
            None => (String::new(), r#"module(load="imtcp")"#.to_owned()),
            Some(t) => (
                format!(
                    "defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" \
                     defaultNetstreamDriverKeyFile=\"{}\"",
                    t.ca.display(),
                    t.cert.display(),
                    t.key.display()
                ),
                format!(
                    "module(load=\"imtcp\" streamDriver.name=\"ossl\" streamDriver.mode=\"1\" \
                     streamDriver.authMode=\"x509/name\" permittedPeer=[\"{}\"])",
                    t.permitted_peer
                ),
            ),
        };
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k" {driver_globals})
{imtcp}
module(load="mmpstrucdata")
template(name="ts" type="string" string="%timereported:::date-rfc3339%")
template(name="json" type="string" string="%$!%\n")
ruleset(name="in") {{
  action(type="mmpstrucdata")
  set $!pri = $pri;
  set $!timestamp = exec_template("ts");
  set $!hostname = $hostname;
  set $!app = $app-name;
  set $!procid = $procid;
  set $!msgid = $msgid;
  set $!msg = $msg;
  set $!raw = $rawmsg;
  action(type="omfile" file="{out}" template="json")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="in")
"#,
            work = work.display(),
            out = out.display(),
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).expect("write rsyslog.conf");
        Rsyslog {
            dir,
            port,
            child: None,
            out,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Starts rsyslogd in the foreground (-n) as our child and waits until it accepts
    /// connections.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "rsyslogd already running");
        let stderr = std::fs::File::create(self.dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(self.dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn rsyslogd");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                self.child = None;
                panic!(
                    "rsyslogd exited at start ({status}):\n{}",
                    self.stderr_text()
                );
            }
            // A bare connection, closed at once: rsyslog may log it (TLS: no handshake); harmless.
            if TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rsyslogd does not listen on {} after {PATIENCE:?}:\n{}",
                self.addr(),
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM to our rsyslogd (by its pid) and wait for it to exit; it writes out what it
    /// received first.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet, so the
            // pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            child.wait().expect("wait for rsyslogd");
        }
    }

    /// Everything received so far, one JSON object per message.
    pub fn received(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("rsyslog output {l:?}: {e}"))
            })
            .collect()
    }

    /// Waits until `pred` holds for what was received; fails the test after [`PATIENCE`].
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rsyslog did not receive {what} within {PATIENCE:?}; got {} messages; rsyslogd \
                 said:\n{}",
                got.len(),
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `cond` holds; fails the test after [`PATIENCE`] with `what` and `details()`.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool, details: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}: {}",
            details()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A CA, a server certificate for `syslog.test` and a client certificate for `gateway.test`,
/// written as PEM files into `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub server: Identity,
    pub client: Identity,
}

pub fn pki(dir: &Path, prefix: &str) -> Pki {
    let write = |name: &str, text: String| {
        let path = dir.join(format!("{prefix}-{name}"));
        std::fs::write(&path, text).expect("write pem");
        path
    };
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{prefix} test CA"));
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        Identity {
            cert: write(&format!("{name}.pem"), cert.pem()),
            key: write(&format!("{name}.key"), key.serialize_pem()),
        }
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        server: leaf("syslog.test"),
        client: leaf("gateway.test"),
    }
}
