//! The operator's path, with the real tools: certificates minted by the `openssl` commands of
//! the repository's README ("Fleet control plane": the block between the `mint` markers, run as written), a bundle made by `tar`, and the
//! API driven by `curl`. Needs openssl, curl, tar and bash; fails (never skips) without them.
#![allow(clippy::unwrap_used)] // reason: tests
mod common;

use std::{path::Path, process::Command};

use common::{Gateway, Options, Pki, Probe};
use gateway_tls::Identity;

fn need(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs `{tool}` (apt-get install -y --no-install-recommends {tool})"
    );
}

/// The shell block of the README between `<!-- mint:begin -->` and `<!-- mint:end -->`.
fn mint_script() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let (_, rest) = doc.split_once("<!-- mint:begin -->").unwrap();
    let (block, _) = rest.split_once("<!-- mint:end -->").unwrap();
    block
        .lines()
        .filter(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sh(dir: &Path, script: &str) -> std::process::Output {
    Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap()
}

struct Curl<'a> {
    dir: &'a Path,
    base: String,
    resolve: String,
}

impl Curl<'_> {
    /// Runs curl as `who` (a file stem, or None for no certificate); returns exit code, HTTP
    /// status and body.
    fn run(&self, who: Option<&str>, args: &[&str]) -> (i32, u16, String) {
        let mut cmd = Command::new("curl");
        cmd.current_dir(self.dir)
            .args(["-sS", "--max-time", "30", "--cacert", "device-ca.pem"])
            .args(["--resolve", &self.resolve])
            .args(["-w", "\n%{http_code}"]);
        if let Some(who) = who {
            cmd.args([
                "--cert",
                &format!("{who}.pem"),
                "--key",
                &format!("{who}.key"),
            ]);
        }
        for a in args {
            cmd.arg(a.replace("$B", &self.base));
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            out.status.code().unwrap_or(-1),
            code.trim().parse().unwrap_or(0),
            body.to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_minted_as_documented_work_with_curl() {
    for tool in ["openssl", "curl", "tar", "bash"] {
        need(tool);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // What the box leaves after `gatewayctl identity csr --name gw-ward7.example.internal --ip
    // 10.10.0.1 --out gw-ward7.csr`: its key (kept here for the test's server) and its request.
    let out = sh(
        d,
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
           -subj '/O=Gateway fleet/CN=gw-ward7.example.internal' \
           -addext 'subjectAltName=DNS:gw-ward7.example.internal,IP:10.10.0.1' \
           -keyout gw-ward7.key -out gw-ward7.csr",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sh(d, &mint_script());
    assert!(
        out.status.success(),
        "the mint block of README.md failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A certificate with two roles, to see it refused.
    let out = sh(
        d,
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
           -subj '/O=Ward 7/OU=admin/OU=soc/CN=eve' -keyout eve.key -out eve.csr
         openssl x509 -req -in eve.csr -CA admin-ca.pem -CAkey admin-ca.key -CAcreateserial \
           -days 1 -extfile client.ext -out eve.pem",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The box's certificate: the names of its request, a server certificate whatever it asked.
    let ext = sh(
        d,
        "openssl x509 -in gw-ward7.pem -noout -ext subjectAltName,basicConstraints,extendedKeyUsage",
    );
    let ext = String::from_utf8_lossy(&ext.stdout);
    for want in [
        "DNS:gw-ward7.example.internal, IP Address:10.10.0.1",
        "CA:FALSE",
        "TLS Web Server Authentication",
    ] {
        assert!(ext.contains(want), "{want} not in:\n{ext}");
    }
    let subject = sh(d, "openssl x509 -in alice.pem -noout -subject");
    assert_eq!(
        String::from_utf8_lossy(&subject.stdout).trim(),
        "subject=O = Ward 7, OU = admin, CN = alice"
    );

    let id = |stem: &str| Identity {
        cert: d.join(format!("{stem}.pem")),
        key: d.join(format!("{stem}.key")),
    };
    let pki = Pki {
        admin_ca: d.join("admin-ca.pem"),
        device_ca: d.join("device-ca.pem"),
        foreign_ca: d.join("device-ca.pem"),
        server: id("gw-ward7"),
        admin: id("alice"),
        admin2: id("alice"),
        soc: id("soc"),
        no_role: id("eve"),
        expired_admin: id("alice"),
        foreign_admin: id("alice"),
        dir,
    };
    let state = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    std::fs::create_dir(etc.path().join("feeds")).unwrap();
    std::fs::write(etc.path().join("policy.toml"), common::BOOT_POLICY).unwrap();
    std::fs::write(etc.path().join("feeds/boot.netset"), "192.0.2.0/24\n").unwrap();
    let probe = Probe::default();
    probe.0.lock().unwrap().in_force = Some(etc.path().join("policy.toml"));
    let gw = Gateway::start_with(pki, state, etc, probe, Options::default()).await;
    let port = gw.addr.port();
    let d = gw.pki.dir.path();
    let curl = Curl {
        dir: d,
        base: format!("https://gw-ward7.example.internal:{port}"),
        resolve: format!("gw-ward7.example.internal:{port}:127.0.0.1"),
    };
    let curl2 = &curl;
    let run = |who, args: &'static [&'static str]| {
        let curl = curl2;
        async move { tokio::task::block_in_place(|| curl.run(who, args)) }
    };

    // The admin reads.
    let (code, status, body) = run(Some("alice"), &["$B/v1/status"]).await;
    assert_eq!((code, status), (0, 200), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["current"]["generation"], 1);

    // No certificate: the TLS layer refuses, curl gets no HTTP answer.
    let (code, status, body) = run(None, &["$B/v1/status"]).await;
    assert_ne!(code, 0, "{body}");
    assert_eq!(status, 0);

    // A bundle made with tar, validated and applied with commit-confirm, then confirmed.
    std::fs::create_dir(d.join("feeds")).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        "name = \"curl\"\nfeed = \"feeds/drop.netset\"\n",
    )
    .unwrap();
    std::fs::write(d.join("feeds/drop.netset"), "198.51.100.0/24\n").unwrap();
    let out = sh(d, "tar -cf bundle.tar policy.toml feeds/");
    assert!(out.status.success());
    let (_, status, body) = run(
        Some("alice"),
        &[
            "-H",
            "content-type: application/x-tar",
            "--data-binary",
            "@bundle.tar",
            "$B/v1/policy/validate",
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, status, body) = run(
        Some("alice"),
        &[
            "-H",
            "content-type: application/x-tar",
            "--data-binary",
            "@bundle.tar",
            "$B/v1/policy/apply?confirm_within=120",
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["generation"], 2);
    assert_eq!(v["pending"]["revert_to"], 1);

    // The soc role may not confirm, and a cross-site-style post (text/plain) is refused.
    let (_, status, body) = run(
        Some("soc"),
        &[
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
            "$B/v1/policy/confirm",
        ],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (_, status, body) = run(
        Some("alice"),
        &[
            "-H",
            "content-type: text/plain",
            "-d",
            "{}",
            "$B/v1/policy/confirm",
        ],
    )
    .await;
    assert_eq!(status, 415, "{body}");
    let (_, status, body) = run(
        Some("alice"),
        &[
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
            "$B/v1/policy/confirm",
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // No such endpoint, or the wrong method: JSON errors.
    let (_, status, body) = run(Some("alice"), &["$B/v1/nothing"]).await;
    assert_eq!(status, 404, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["message"], "no endpoint /v1/nothing");
    let (_, status, body) = run(Some("alice"), &["-X", "DELETE", "$B/v1/history"]).await;
    assert_eq!(status, 405, "{body}");

    // Two OUs: no role.
    let (_, status, body) = run(Some("eve"), &["$B/v1/status"]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("has 2 OUs"), "{body}");

    // The export is a tar archive that tar reads.
    let (_, status, _) = run(Some("alice"), &["-o", "backup.tar", "$B/v1/history/export"]).await;
    assert_eq!(status, 200);
    let out = sh(d, "tar -tf backup.tar");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.lines().any(|l| l == "history.json"), "{listing}");
    assert!(
        listing.lines().any(|l| l.ends_with("/feeds/drop.netset")),
        "{listing}"
    );

    let confirm = gw.audit_of("policy.confirm");
    let ok = confirm.iter().find(|l| l["result"] == "ok").unwrap();
    assert_eq!(ok["who"]["subject"], "O=Ward 7, OU=admin, CN=alice");
    assert_eq!(ok["who"]["cn"], "alice");
    let denied = confirm.iter().find(|l| l["result"] == "denied").unwrap();
    assert_eq!(denied["who"]["cn"], "soc-analyst-1");
    gw.stop().await;
}
