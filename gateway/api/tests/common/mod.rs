//! Test harness: a PKI minted with rcgen, a fake backend that records what it is asked, and a
//! gateway (controller + HTTPS server on 127.0.0.1) with a TCP "data path" in front of it that a
//! policy can close — so a push can really cut the admin off.
#![allow(dead_code)] // reason: each test file uses a different part of the harness
#![allow(clippy::unwrap_used)] // reason: test harness; a failure here is a test failure

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use gateway_api::{
    ApiClient, ApiServer, Backend, BackendError, Controller, ControllerConfig, InForce,
    PolicyBundle, ServerConfig, ServerLimits, SharedController, Validation, backend::Applied,
};
use gateway_tls::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};

/// Certificates and keys as PEM files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// Issues the admins' and the SOC's certificates.
    pub admin_ca: PathBuf,
    /// Issues the box's server certificate.
    pub device_ca: PathBuf,
    pub server: Identity,
    pub admin: Identity,
    pub admin2: Identity,
    pub soc: Identity,
    pub no_role: Identity,
    pub expired_admin: Identity,
    /// An admin certificate from a CA the box does not trust.
    pub foreign_admin: Identity,
    pub foreign_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn client_cert(
    dir: &Path,
    name: &str,
    ou: Option<&str>,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    expired: bool,
) -> Identity {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::OrganizationName, "Ward 7");
    if let Some(ou) = ou {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, ou);
    }
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, issuer).unwrap();
    Identity {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}.key"), &key.serialize_pem()),
    }
}

impl Pki {
    pub fn mint() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let admin_ca = ca("Gateway fleet admin CA");
        let device_ca = ca("Gateway fleet device CA");
        let foreign = ca("Someone else's CA");

        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        sp.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        sp.distinguished_name.push(DnType::CommonName, "gw-ward7");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp.signed_by(&server_key, &device_ca).unwrap();

        Pki {
            admin_ca: write(d, "admin-ca.pem", &admin_ca.pem()),
            device_ca: write(d, "device-ca.pem", &device_ca.pem()),
            foreign_ca: write(d, "foreign-ca.pem", &foreign.pem()),
            server: Identity {
                cert: write(d, "server.pem", &server_cert.pem()),
                key: write(d, "server.key", &server_key.serialize_pem()),
            },
            admin: client_cert(d, "alice", Some("admin"), &admin_ca, false),
            admin2: client_cert(d, "bob", Some("admin"), &admin_ca, false),
            soc: client_cert(d, "soc-analyst", Some("soc"), &admin_ca, false),
            no_role: client_cert(d, "carol", None, &admin_ca, false),
            expired_admin: client_cert(d, "dave", Some("admin"), &admin_ca, true),
            foreign_admin: client_cert(d, "mallory", Some("admin"), &foreign, false),
            dir,
        }
    }
}

/// What the fake backend was asked, with the policy text it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Validate(String),
    Apply(String),
}

#[derive(Debug, Default)]
pub struct ProbeState {
    pub calls: Vec<Call>,
    /// The policy file in force.
    pub in_force: Option<PathBuf>,
    pub generation: u64,
    /// Make the next apply fail as the kernel would.
    pub fail_next_apply: bool,
}

/// Shared view of the fake backend (it lives inside the controller).
#[derive(Clone, Debug, Default)]
pub struct Probe(pub Arc<Mutex<ProbeState>>);

impl Probe {
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }
    pub fn applies(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Apply(t) => Some(t),
                Call::Validate(_) => None,
            })
            .collect()
    }
}

/// A stand-in for the daemon's engine. Policies are lines: `name = "…"`, `feed = "path"` (must
/// exist beside the policy), `invalid` (refused with a compiler-style message), `cut_admin`
/// (closes the management path while in force).
pub struct FakeBackend {
    pub probe: Probe,
    pub lockout: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FakeError(String);

fn refused(msg: String) -> BackendError {
    BackendError::Refused(Box::new(FakeError(msg)))
}

impl FakeBackend {
    fn compile(policy: &Path) -> Result<(String, Vec<PathBuf>), BackendError> {
        let text = std::fs::read_to_string(policy)
            .map_err(|e| refused(format!("{}: {e}", policy.display())))?;
        let dir = policy.parent().unwrap();
        let mut feeds = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim() == "invalid" {
                return Err(refused(format!(
                    "{}:{line_no}: blocklist.prefixes: \"203.0.113.777/32\" is not an IP address or CIDR",
                    policy.display()
                )));
            }
            if let Some(feed) = line.strip_prefix("feed = ") {
                let feed = feed.trim_matches('"');
                let path = dir.join(feed);
                if !path.is_file() {
                    return Err(refused(format!(
                        "{}:{line_no}: feed.path: cannot read {}: no such file",
                        policy.display(),
                        path.display()
                    )));
                }
                feeds.push(PathBuf::from(feed));
            }
        }
        Ok((text, feeds))
    }
}

impl Backend for FakeBackend {
    fn validate(&self, policy: &Path) -> Result<Validation, BackendError> {
        let (text, _) = Self::compile(policy)?;
        let mut s = self.probe.0.lock().unwrap();
        s.calls.push(Call::Validate(text.clone()));
        Ok(Validation {
            image_hash: format!("image-of-{}", text.len()),
            entries: text.lines().count() as u64,
            diff: format!("policy: {} lines\n", text.lines().count()),
            warnings: vec![],
            details: json!({}),
        })
    }

    fn apply(&mut self, policy: &Path) -> Result<Applied, BackendError> {
        let (text, _) = Self::compile(policy)?;
        let mut s = self.probe.0.lock().unwrap();
        if std::mem::take(&mut s.fail_next_apply) {
            return Err(BackendError::Failed(Box::new(FakeError(
                "BPF_MAP_UPDATE_BATCH: out of memory".into(),
            ))));
        }
        s.calls.push(Call::Apply(text.clone()));
        s.in_force = Some(policy.to_owned());
        s.generation += 1;
        self.lockout.store(
            text.lines().any(|l| l.trim() == "cut_admin"),
            Ordering::SeqCst,
        );
        Ok(Applied {
            image_hash: format!("image-of-{}", text.len()),
            generation: s.generation,
            unchanged: false,
            diff: String::new(),
            warnings: vec![],
            details: json!({}),
        })
    }

    fn in_force(&self) -> Result<Option<InForce>, BackendError> {
        let s = self.probe.0.lock().unwrap();
        let Some(policy) = s.in_force.clone() else {
            return Ok(None);
        };
        let (_, files) = Self::compile(&policy)?;
        Ok(Some(InForce { policy, files }))
    }

    fn status(&self) -> Result<Value, BackendError> {
        let s = self.probe.0.lock().unwrap();
        Ok(json!({"generation": s.generation, "policy": s.in_force}))
    }

    fn counters(&self) -> Result<Value, BackendError> {
        Ok(json!({"counters": [{"role": "lan", "reason": "pass", "packets": 42}]}))
    }
}

pub struct Options {
    pub history_keep: usize,
    pub trusted_keys: Option<PathBuf>,
    pub limits: ServerLimits,
    pub audit_max_bytes: u64,
    pub audit_keep: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history_keep: 16,
            trusted_keys: None,
            limits: ServerLimits::default(),
            audit_max_bytes: 4 << 20,
            audit_keep: 8,
        }
    }
}

/// A running API in front of a fake backend.
pub struct Gateway {
    pub pki: Pki,
    pub state: tempfile::TempDir,
    /// The box's own policy directory (what `gatewayd --policy` started with).
    pub etc: tempfile::TempDir,
    /// The API, directly.
    pub addr: SocketAddr,
    /// The API through the "data path": closed while a `cut_admin` policy is in force.
    pub proxied: SocketAddr,
    pub probe: Probe,
    pub lockout: Arc<AtomicBool>,
    pub controller: SharedController<FakeBackend>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub const BOOT_POLICY: &str = "name = \"boot\"\nfeed = \"feeds/boot.netset\"\n";

impl Gateway {
    pub async fn start(options: Options) -> Gateway {
        let pki = Pki::mint();
        let state = tempfile::tempdir().unwrap();
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir(etc.path().join("feeds")).unwrap();
        std::fs::write(etc.path().join("policy.toml"), BOOT_POLICY).unwrap();
        std::fs::write(etc.path().join("feeds/boot.netset"), "192.0.2.0/24\n").unwrap();
        let probe = Probe::default();
        probe.0.lock().unwrap().in_force = Some(etc.path().join("policy.toml"));
        Gateway::start_with(pki, state, etc, probe, options).await
    }

    /// A gateway over existing state (a restart).
    pub async fn start_with(
        pki: Pki,
        state: tempfile::TempDir,
        etc: tempfile::TempDir,
        probe: Probe,
        options: Options,
    ) -> Gateway {
        let lockout = Arc::new(AtomicBool::new(false));
        let backend = FakeBackend {
            probe: probe.clone(),
            lockout: lockout.clone(),
        };
        let mut config = ControllerConfig::new(state.path());
        config.history_keep = options.history_keep;
        config.trusted_keys = options.trusted_keys.clone();
        config.audit.max_bytes = options.audit_max_bytes;
        config.audit.keep = options.audit_keep;
        let controller = tokio::task::spawn_blocking(move || Controller::open(config, backend))
            .await
            .unwrap()
            .unwrap();
        let controller = SharedController::new(controller);
        let server = ApiServer::bind(
            &ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                identity: pki.server.clone(),
                client_ca: pki.admin_ca.clone(),
                limits: options.limits,
            },
            controller.clone(),
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        let proxied = data_path(addr, lockout.clone()).await;
        Gateway {
            pki,
            state,
            etc,
            addr,
            proxied,
            probe,
            lockout,
            controller,
            shutdown: Some(tx),
            server: Some(task),
        }
    }

    /// Stops the server and hands back what a restart needs.
    pub async fn stop(mut self) -> (Pki, tempfile::TempDir, tempfile::TempDir, Probe) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.server.take() {
            task.await.unwrap();
        }
        let Gateway {
            pki,
            state,
            etc,
            probe,
            ..
        } = self;
        (pki, state, etc, probe)
    }

    pub fn client(&self, id: &Identity) -> ApiClient {
        ApiClient::new(&self.addr.to_string(), "localhost", &self.pki.device_ca, id)
            .unwrap()
            .with_timeout(Duration::from_secs(30))
    }

    /// The admin's client through the data path.
    pub fn client_via_data_path(&self, id: &Identity) -> ApiClient {
        ApiClient::new(
            &self.proxied.to_string(),
            "127.0.0.1",
            &self.pki.device_ca,
            id,
        )
        .unwrap()
        .with_timeout(Duration::from_secs(30))
    }

    pub fn client_without_certificate(&self) -> ApiClient {
        let config = gateway_tls::client_config(&self.pki.device_ca, None).unwrap();
        ApiClient::from_config(&self.addr.to_string(), "localhost", config)
            .unwrap()
            .with_timeout(Duration::from_secs(30))
    }

    /// Every audit line on disk (rotated files first), as JSON.
    pub fn audit(&self) -> Vec<Value> {
        let files = self.controller.audit().files();
        let mut out = Vec::new();
        for f in files {
            if let Ok(text) = std::fs::read_to_string(&f) {
                out.extend(
                    text.lines()
                        .map(|l| serde_json::from_str::<Value>(l).unwrap()),
                );
            }
        }
        out
    }

    /// Audit lines of one action.
    pub fn audit_of(&self, action: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|l| l["action"] == action)
            .collect()
    }

    /// Waits (bounded) until `cond` holds on the audit log; panics with the log otherwise.
    pub async fn wait_for_audit(&self, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..600 {
            let lines = self.audit();
            if cond(&lines) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}; audit log: {:#?}",
            self.audit()
        );
    }
}

/// A TCP relay standing for the box's data path between the admin and the API: while `closed`
/// it drops every connection, as a policy that blocks the management port would.
async fn data_path(upstream: SocketAddr, closed: Arc<AtomicBool>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if closed.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

/// A bundle of one policy (`name = …` plus `extra` lines) and its feed.
pub fn policy(name: &str, extra: &str) -> PolicyBundle {
    let text = format!("name = \"{name}\"\nfeed = \"feeds/drop.netset\"\n{extra}");
    let mut b = PolicyBundle::new("policy.toml", text.into_bytes()).unwrap();
    b.add(
        "feeds/drop.netset",
        format!("# {name}\n198.51.100.0/24\n").into_bytes(),
    )
    .unwrap();
    b
}

/// The policy text of `bundle`.
pub fn text(bundle: &PolicyBundle) -> String {
    let (_, content) = bundle
        .files()
        .find(|(n, _)| *n == bundle.policy_name())
        .unwrap();
    String::from_utf8(content.to_vec()).unwrap()
}
