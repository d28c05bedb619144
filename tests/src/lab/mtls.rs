//! Certificates for the lab's management API (minted with `openssl`) and `gatewayctl --remote` run
//! from the LAN client with one of them.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, ensure};

use super::Side::Client;
use super::addr::GW_LAN_V4;
use super::{CtlOutput, Lab};

/// The port the lab's management API listens on (the policy's `[management] api_port`).
pub const API_PORT: u16 = 8443;

/// Runs `openssl` with `args` in `dir`; fails with its output.
fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (this test needs it: apt-get install openssl)")?;
    ensure!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn ca(dir: &Path, name: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &format!("/O=Lab/CN=lab {name} CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
        ],
    )
}

/// A certificate `name.pem` / `name.key` with `subject`, issued by `ca` with extensions `ext`.
fn issue(dir: &Path, name: &str, subject: &str, ca: &str, ext: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}-ca.pem"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            ext,
            "-out",
            &format!("{name}.pem"),
        ],
    )
}

/// The admin CA (alice: admin, sam: soc), the device CA (the box), and another CA whose "admin"
/// must be refused.
pub fn mint(dir: &Path) -> Result<()> {
    for name in ["admin", "device", "other"] {
        ca(dir, name)?;
    }
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )?;
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:gw-lab.example.internal,IP:{GW_LAN_V4}\n"
        ),
    )?;
    issue(
        dir,
        "alice",
        "/O=Lab/OU=admin/CN=alice",
        "admin",
        "client.ext",
    )?;
    issue(dir, "sam", "/O=Lab/OU=soc/CN=sam", "admin", "client.ext")?;
    issue(
        dir,
        "mallory",
        "/O=Lab/OU=admin/CN=mallory",
        "other",
        "client.ext",
    )?;
    issue(dir, "server", "/O=Lab/CN=gw-lab", "device", "server.ext")?;
    Ok(())
}

/// Where the API listens (the gateway's lan address) and the gatewayd options that serve it with
/// the certificates [`mint`] made in `certs`.
pub fn api_args(certs: &Path) -> (String, Vec<OsString>) {
    let listen = format!("{GW_LAN_V4}:{API_PORT}");
    let c = |f: &str| OsString::from(certs.join(f));
    let args = vec![
        "--api-listen".into(),
        listen.clone().into(),
        "--api-cert".into(),
        c("server.pem"),
        "--api-key".into(),
        c("server.key"),
        "--api-client-ca".into(),
        c("admin-ca.pem"),
    ];
    (listen, args)
}

/// gatewayctl --remote from the LAN client, as `who` (a certificate name in `certs`).
pub struct Remote {
    certs: PathBuf,
    addr: String,
}

impl Remote {
    pub fn new(certs: PathBuf, addr: String) -> Remote {
        Remote { certs, addr }
    }

    /// Runs gatewayctl --remote as `who`; any exit code is returned.
    pub fn run(&self, lab: &mut Lab, who: &str, args: &[&str]) -> Result<CtlOutput> {
        let c = |f: &str| self.certs.join(f).display().to_string();
        let (ca, cert, key) = (
            c("device-ca.pem"),
            c(&format!("{who}.pem")),
            c(&format!("{who}.key")),
        );
        let mut all = vec![
            "--remote", &self.addr, "--ca", &ca, "--cert", &cert, "--key", &key,
        ];
        all.extend_from_slice(args);
        lab.ctl_in(Client, &all)
    }

    pub fn ok(&self, lab: &mut Lab, who: &str, args: &[&str]) -> Result<String> {
        let out = self.run(lab, who, args)?;
        ensure!(
            out.success(),
            "gatewayctl --remote ({who}) {} failed: {out}",
            args.join(" ")
        );
        Ok(out.stdout)
    }

    pub fn json(&self, lab: &mut Lab, who: &str, args: &[&str]) -> Result<serde_json::Value> {
        let out = self.ok(lab, who, args)?;
        serde_json::from_str(&out).with_context(|| format!("{} --json: {out}", args.join(" ")))
    }

    /// (generation, bundle hash) in force and whether an apply is pending, per `status --json`.
    pub fn in_force(&self, lab: &mut Lab, who: &str) -> Result<(u64, String, bool)> {
        let s = self.json(lab, who, &["status", "--json"])?;
        let current = &s["current"];
        Ok((
            current["generation"]
                .as_u64()
                .context("status: current.generation")?,
            current["hash"]
                .as_str()
                .context("status: current.hash")?
                .to_owned(),
            !s["pending"].is_null(),
        ))
    }
}
