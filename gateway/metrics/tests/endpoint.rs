//! The scrape endpoint against real `curl`, over plain HTTP, TLS and mutual TLS, on a tokio
//! current_thread runtime like the daemon's, on 127.0.0.1. Needs curl; fails, never skips,
//! without it.
use std::{
    io::Read as _,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use gateway_metrics::{
    Limits, MetricsConfig, MetricsError, MetricsServer, MetricsTls, example, render,
};
use gateway_tls::Identity;

/// A metrics endpoint on its own thread and current_thread runtime, serving `example()`.
struct Endpoint {
    addr: SocketAddr,
    scrapes: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), MetricsError>>>,
}

impl Endpoint {
    fn start(tls: Option<MetricsTls>, limits: Limits) -> Endpoint {
        let config = MetricsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls,
            limits,
        };
        let scrapes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&scrapes);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let server = MetricsServer::bind(&config).await?;
                addr_tx.send(server.local_addr()?).expect("test waits");
                let source = Arc::new(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    example()
                });
                server
                    .serve(source, async {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        let Ok(addr) = addr_rx.recv() else {
            panic!("endpoint did not start: {:?}", thread.join());
        };
        Endpoint {
            addr,
            scrapes,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    fn scrapes(&self) -> usize {
        self.scrapes.load(Ordering::SeqCst)
    }

    /// Stops the endpoint and checks it ended cleanly and let go of its port.
    fn stop(mut self) {
        let addr = self.addr;
        self.shut_down()
            .expect("endpoint thread present")
            .expect("endpoint thread panicked")
            .expect("serve returned an error");
        assert!(
            TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections after shutdown"
        );
    }

    fn shut_down(&mut self) -> Option<std::thread::Result<Result<(), MetricsError>>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().map(JoinHandle::join)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// What curl got: exit status, HTTP status ("000" when there was no response), headers, body.
#[derive(Debug)]
struct Fetched {
    exit: Option<i32>,
    status: String,
    headers: String,
    body: String,
    stderr: String,
}

fn curl_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "120", "-w", "%{http_code}", "-D"])
        .arg(dir.join("headers"))
        .arg("-o")
        .arg(dir.join("body"))
        .args(args);
    cmd
}

fn fetched(dir: &Path, out: Output) -> Fetched {
    Fetched {
        exit: out.status.code(),
        status: String::from_utf8_lossy(&out.stdout).into_owned(),
        headers: std::fs::read_to_string(dir.join("headers")).unwrap_or_default(),
        body: std::fs::read_to_string(dir.join("body")).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn curl(args: &[&str]) -> Fetched {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = curl_command(dir.path(), args).output().unwrap_or_else(|e| {
        panic!(
            "this test needs curl ({e}); install it with \
             `apt-get install -y --no-install-recommends curl`"
        )
    });
    fetched(dir.path(), out)
}

fn header<'a>(f: &'a Fetched, name: &str) -> Option<&'a str> {
    f.headers.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn assert_scrape_ok(f: &Fetched) {
    assert_eq!(f.status, "200", "{f:#?}");
    assert_eq!(
        header(f, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{f:#?}"
    );
    assert_eq!(f.body, render(&example()).expect("render"));
}

/// Certificates made for the test: one CA with a server and a client certificate, and a second,
/// unrelated CA with its own client certificate.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server: Identity,
    client: Identity,
    stranger: Identity,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca");
    (cert, rcgen::Issuer::new(params, key))
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
) -> Identity {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("leaf");
    Identity {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}.key"), &key.serialize_pem()),
    }
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (soc_ca, soc) = ca("SOC test CA");
        let (_, other) = ca("Some other CA");
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        Pki {
            ca: write(dir.path(), "ca.pem", &soc_ca.pem()),
            server: leaf(
                dir.path(),
                "gateway",
                &["localhost", "127.0.0.1"],
                ServerAuth,
                &soc,
            ),
            client: leaf(dir.path(), "soc-scraper", &[], ClientAuth, &soc),
            stranger: leaf(dir.path(), "stranger", &[], ClientAuth, &other),
            _dir: dir,
        }
    }

    fn path(p: &Path) -> &str {
        p.to_str().expect("utf-8 temp path")
    }
}

#[test]
fn plain_http_serves_metrics_and_refuses_everything_else() {
    let endpoint = Endpoint::start(None, Limits::default());
    let metrics = endpoint.url("http", "/metrics");

    assert_scrape_ok(&curl(&[&metrics]));
    assert_scrape_ok(&curl(&[&endpoint.url("http", "/metrics?name[]=x")]));
    assert_eq!(endpoint.scrapes(), 2);

    let index = curl(&[&endpoint.url("http", "/")]);
    assert_eq!(index.status, "200", "{index:#?}");
    assert!(index.body.contains("/metrics"), "{index:#?}");

    for path in ["/metric", "/metrics/", "/favicon.ico", "/../metrics"] {
        let f = curl(&["--path-as-is", &endpoint.url("http", path)]);
        assert_eq!(f.status, "404", "{path}: {f:#?}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let f = curl(&["-X", method, &metrics]);
        assert_eq!(f.status, "405", "{method}: {f:#?}");
        assert_eq!(header(&f, "allow"), Some("GET"), "{f:#?}");
    }
    let head = curl(&["-I", &metrics]);
    assert_eq!(head.status, "405", "{head:#?}");
    let post = curl(&["--data", "x=1", &metrics]);
    assert_eq!(post.status, "405", "{post:#?}");

    // A GET that carries a body is refused too, and the connection is not reused.
    let with_body = curl(&["-X", "GET", "--data", "x=1", &metrics]);
    assert_eq!(with_body.status, "413", "{with_body:#?}");
    assert_eq!(header(&with_body, "connection"), Some("close"));
    let chunked = curl(&[
        "-X",
        "GET",
        "-H",
        "Transfer-Encoding: chunked",
        "--data",
        "x",
        &metrics,
    ]);
    assert_eq!(chunked.status, "413", "{chunked:#?}");

    // None of the refused requests asked the daemon for a snapshot.
    assert_eq!(endpoint.scrapes(), 2);
    endpoint.stop();
}

#[test]
fn tls_serves_metrics_to_a_client_that_trusts_the_gateway() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(
        Some(MetricsTls {
            identity: pki.server.clone(),
            client_ca: None,
        }),
        Limits::default(),
    );
    let metrics = endpoint.url("https", "/metrics");
    assert_scrape_ok(&curl(&["--cacert", Pki::path(&pki.ca), &metrics]));

    // Proof that the answer above came over TLS with the gateway's certificate: a client that does
    // not trust the CA refuses, and plain HTTP gets no answer.
    let untrusted = curl(&[&metrics]);
    assert_ne!(untrusted.exit, Some(0), "{untrusted:#?}");
    assert_eq!(untrusted.status, "000", "{untrusted:#?}");
    let plain = curl(&[&endpoint.url("http", "/metrics")]);
    assert_ne!(plain.status, "200", "{plain:#?}");
    assert_eq!(endpoint.scrapes(), 1);
    endpoint.stop();
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_from_the_soc_ca() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(
        Some(MetricsTls {
            identity: pki.server.clone(),
            client_ca: Some(pki.ca.clone()),
        }),
        Limits::default(),
    );
    let metrics = endpoint.url("https", "/metrics");
    let ca = Pki::path(&pki.ca);

    let client = [
        "--cert",
        Pki::path(&pki.client.cert),
        "--key",
        Pki::path(&pki.client.key),
    ];
    assert_scrape_ok(&curl(
        &[&["--cacert", ca], &client[..], &[&metrics]].concat(),
    ));

    let stranger = [
        "--cert",
        Pki::path(&pki.stranger.cert),
        "--key",
        Pki::path(&pki.stranger.key),
    ];
    for tls_version in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"][..]] {
        // No certificate, and a certificate from another CA: refused during the handshake, no
        // HTTP response at all.
        for (who, cert, alert) in [
            ("no certificate", &[][..], "alert certificate required"),
            ("another CA", &stranger[..], "alert unknown ca"),
        ] {
            let f = curl(&[&["--cacert", ca], tls_version, cert, &[&metrics]].concat());
            assert_ne!(f.exit, Some(0), "{who} {tls_version:?}: {f:#?}");
            assert_eq!(f.status, "000", "{who} {tls_version:?}: {f:#?}");
            assert!(f.body.is_empty(), "{who} {tls_version:?}: {f:#?}");
            assert!(
                f.stderr.contains(alert),
                "{who} {tls_version:?}: curl should report the server's TLS alert \"{alert}\": {f:#?}"
            );
        }
        // And the right certificate works with this protocol version too.
        assert_scrape_ok(&curl(
            &[&["--cacert", ca], tls_version, &client[..], &[&metrics]].concat(),
        ));
    }
    // The refused clients never reached the renderer.
    assert_eq!(endpoint.scrapes(), 3);
    endpoint.stop();
}

#[test]
fn extra_clients_wait_for_a_free_connection_slot() {
    let endpoint = Endpoint::start(
        None,
        Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(3600),
            connection_lifetime: Duration::from_secs(3600),
            ..Limits::default()
        },
    );
    // An idle client takes the only slot...
    let idle = TcpStream::connect(endpoint.addr).expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut waiting = curl_command(dir.path(), &[&endpoint.url("http", "/metrics")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("this test needs curl: apt-get install -y --no-install-recommends curl");
    // ...so the scraper cannot be served while it stays connected. (This can only pass wrongly on
    // a very slow machine, never fail wrongly.)
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        waiting.try_wait().expect("curl").is_none(),
        "a second client was served while the only slot was taken"
    );
    assert_eq!(endpoint.scrapes(), 0);
    // Once the idle client leaves, the scraper gets its turn.
    drop(idle);
    let out = waiting.wait_with_output().expect("curl");
    assert_scrape_ok(&fetched(dir.path(), out));
    endpoint.stop();
}

/// Reads until the server closes the connection; the read timeout is only a guard against a
/// server that never does (then the test fails instead of hanging).
fn assert_closed_by_server(mut stream: TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close a stalled connection: {e}"),
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}

fn assert_stalled_clients_are_disconnected(limits: Limits) {
    let endpoint = Endpoint::start(None, limits);
    // Sends nothing at all.
    assert_closed_by_server(TcpStream::connect(endpoint.addr).expect("connect"));
    // Starts a request and never finishes its headers (slowloris).
    let mut partial = TcpStream::connect(endpoint.addr).expect("connect");
    std::io::Write::write_all(&mut partial, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    assert_closed_by_server(partial);
    assert_eq!(endpoint.scrapes(), 0);
    endpoint.stop();
}

/// A scraper that keeps its connection open after a scrape does not keep its slot forever either.
#[test]
fn idle_kept_alive_connections_are_closed_by_the_header_timeout() {
    let endpoint = Endpoint::start(
        None,
        Limits {
            header_read_timeout: Duration::from_millis(300),
            connection_lifetime: Duration::from_secs(3600),
            ..Limits::default()
        },
    );
    let mut stream = TcpStream::connect(endpoint.addr).expect("connect");
    std::io::Write::write_all(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    )
    .expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close an idle kept-alive connection: {e}"),
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with("/metrics\n"),
        "one response, then the close: {text}"
    );
    endpoint.stop();
}

#[test]
fn stalled_clients_are_disconnected_by_the_header_timeout() {
    assert_stalled_clients_are_disconnected(Limits {
        header_read_timeout: Duration::from_millis(300),
        connection_lifetime: Duration::from_secs(3600),
        ..Limits::default()
    });
}

#[test]
fn stalled_clients_are_disconnected_by_the_connection_lifetime() {
    assert_stalled_clients_are_disconnected(Limits {
        header_read_timeout: Duration::from_secs(3600),
        connection_lifetime: Duration::from_millis(300),
        ..Limits::default()
    });
}

#[test]
fn stalled_tls_handshakes_are_disconnected() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(
        Some(MetricsTls {
            identity: pki.server.clone(),
            client_ca: Some(pki.ca.clone()),
        }),
        Limits {
            handshake_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_secs(3600),
            connection_lifetime: Duration::from_secs(3600),
            ..Limits::default()
        },
    );
    assert_closed_by_server(TcpStream::connect(endpoint.addr).expect("connect"));
    endpoint.stop();
}

#[test]
fn oversized_request_heads_are_refused() {
    let endpoint = Endpoint::start(None, Limits::default());
    let big = format!("X-Padding: {}", "a".repeat(64 * 1024));
    let f = curl(&["-H", &big, &endpoint.url("http", "/metrics")]);
    assert_ne!(f.status, "200", "{f:#?}");
    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
    let mut args: Vec<&str> = many.iter().flat_map(|h| ["-H", h.as_str()]).collect();
    let url = endpoint.url("http", "/metrics");
    args.push(&url);
    let f = curl(&args);
    assert_ne!(f.status, "200", "{f:#?}");
    assert_eq!(endpoint.scrapes(), 0);
    endpoint.stop();
}

#[test]
fn start_up_errors_name_what_is_wrong() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let listen = taken.local_addr().expect("addr");
        let e = MetricsServer::bind(&MetricsConfig {
            listen,
            tls: None,
            limits: Limits::default(),
        })
        .await
        .expect_err("port in use");
        assert!(e.to_string().contains(&listen.to_string()), "{e}");

        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = MetricsServer::bind(&MetricsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls: Some(MetricsTls {
                identity: Identity {
                    cert: missing.clone(),
                    key: missing,
                },
                client_ca: None,
            }),
            limits: Limits::default(),
        })
        .await
        .expect_err("missing certificate");
        assert!(e.to_string().contains("missing.pem"), "{e}");
    });
}
