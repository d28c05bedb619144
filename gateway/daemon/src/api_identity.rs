//! The management API's server identity on the box, provisioned the way an operator does it for a
//! fleet: the box makes its own TLS key (it never leaves `/data/identity`) and a PKCS#10 request
//! naming itself; the admin signs the request with the device CA offline; the box installs the
//! certificate together with the admin CA (and the bundle signers' keys, when pushes must be signed).
//!
//! Layout under the identity directory (`/data/identity` on the image, mode 0700):
//!
//! ```text
//! api.key                 the API's TLS key (P-256, PKCS#8 PEM, 0600), made by the first `csr`
//! api -> api.<stamp>/     the installed set, swapped in with one rename of a symlink:
//!        cert.pem         the box's certificate (and any intermediates), leaf first
//!        client-ca.pem    the admin CA: who may call the API
//!        trusted-keys     optional: ed25519 keys of the bundle signers (--api-trusted-keys)
//! ```
//!
//! Why a separate key rather than the ed25519 device identity: browsers do not accept Ed25519 server
//! certificates, and the fleet's CAs and people's keys are P-256 (README's mint block), so one key type
//! serves every TLS peer; and the API key can be re-provisioned (a new box name, a compromised key)
//! without touching the device identity the inventory knows the box by.
//!
//! Installing checks everything gatewayd would trip over at its next start (the certificate belongs to
//! this key, is valid now, is a server certificate, the CA file holds CA certificates, the signers'
//! file parses, and rustls accepts the set as gatewayd builds it) before anything is written: a
//! refused set leaves the installed one in force, and a crash mid-way leaves either the old or the new
//! set behind the `api` link, never a mixture.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType,
    string::Ia5String,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub const DEFAULT_DIR: &str = "/data/identity";
pub const KEY_FILE: &str = "api.key";
/// The symlink to the installed set.
pub const INSTALLED: &str = "api";
pub const CERT_FILE: &str = "cert.pem";
pub const CLIENT_CA_FILE: &str = "client-ca.pem";
pub const TRUSTED_KEYS_FILE: &str = "trusted-keys";
/// Organisation of the request's subject, as the README's mint block names the fleet's boxes.
const ORGANISATION: &str = "Gateway fleet";

#[derive(Debug, thiserror::Error)]
pub enum ApiIdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a PEM private key this box can use for TLS: {source}")]
    KeyFormat {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error(
        "no API key in {dir}: run `gatewayctl identity csr` first (the certificate must be issued for that key)"
    )]
    NoKey { dir: PathBuf },
    #[error("--name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("making the certificate request: {0}")]
    Request(#[source] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] gateway_tls::TlsError),
    #[error("{path}: certificate {index} is not DER X.509: {detail}")]
    Parse {
        path: PathBuf,
        index: usize,
        detail: String,
    },
    #[error(
        "{path}: the certificate ({subject}) is not for this box's API key {key}: sign the request `gatewayctl identity csr` printed"
    )]
    KeyMismatch {
        path: PathBuf,
        subject: String,
        key: PathBuf,
    },
    #[error("{path}: the certificate ({subject}) is not valid before {not_before}")]
    NotYetValid {
        path: PathBuf,
        subject: String,
        not_before: String,
    },
    #[error("{path}: the certificate ({subject}) expired on {not_after}")]
    Expired {
        path: PathBuf,
        subject: String,
        not_after: String,
    },
    #[error("{path}: the certificate ({subject}) is not a TLS server certificate: {why}")]
    NotServer {
        path: PathBuf,
        subject: String,
        why: &'static str,
    },
    #[error(
        "{path}: certificate {index} ({subject}) is not a CA certificate (basicConstraints CA:TRUE)"
    )]
    NotCa {
        path: PathBuf,
        index: usize,
        subject: String,
    },
    #[error("--trusted-keys: {source}")] // the source names the file and line
    TrustedKeys {
        path: PathBuf,
        #[source]
        source: gateway_api::signing::SigningError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ApiIdentityError + '_ {
    move |source| ApiIdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Paths of the installed set, for gatewayd's `--api-*` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub trusted_keys: Option<PathBuf>,
}

impl InstalledPaths {
    /// Paths through the `api` link (stable across installs).
    pub fn in_dir(dir: &Path) -> InstalledPaths {
        let set = dir.join(INSTALLED);
        let trusted = set.join(TRUSTED_KEYS_FILE);
        InstalledPaths {
            cert: set.join(CERT_FILE),
            key: dir.join(KEY_FILE),
            client_ca: set.join(CLIENT_CA_FILE),
            trusted_keys: trusted.exists().then_some(trusted),
        }
    }
}

/// A request made by [`csr`].
#[derive(Debug)]
pub struct Csr {
    pub pem: String,
    /// The key was made now (first request on this box).
    pub key_created: bool,
    pub key_path: PathBuf,
}

/// Loads `dir/api.key`, or makes it (P-256, 0600) when there is none. Never replaces a key: a
/// certificate may already be issued for it.
fn load_or_create_key(dir: &Path) -> Result<(KeyPair, bool), ApiIdentityError> {
    let path = dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(pem) => {
            let key = KeyPair::from_pem(&pem)
                .map_err(|source| ApiIdentityError::KeyFormat { path, source })?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            let key = KeyPair::generate().map_err(ApiIdentityError::Request)?;
            write_new(&path, key.serialize_pem().as_bytes(), 0o600)?;
            Ok((key, true))
        }
        Err(source) => Err(ApiIdentityError::Io { path, source }),
    }
}

/// Writes `path` through a temporary file in the same directory, synced, then renamed: a reader sees
/// the old content or the whole new one.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ApiIdentityError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // The mode of create() is filtered by the umask; the key must be 0600 whatever it is.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// A DNS name as a certificate can carry it: LDH labels, 1–63 characters each, 253 in all.
fn check_name(name: &str) -> Result<(), ApiIdentityError> {
    let bad = |why| {
        Err(ApiIdentityError::BadName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > 253 {
        return bad("a host name has 1 to 253 characters");
    }
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every label has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.' may appear in a host name");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label may not begin or end with '-'");
        }
    }
    Ok(())
}

/// A PKCS#10 request for the API's key: subject `O=Gateway fleet, CN=<name>`, subjectAltName
/// `DNS:<name>` and `IP:<ip>` for each management address. Makes the key on the first call.
pub fn csr(dir: &Path, name: &str, ips: &[IpAddr]) -> Result<Csr, ApiIdentityError> {
    check_name(name)?;
    let (key, key_created) = load_or_create_key(dir)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANISATION);
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let dns = Ia5String::try_from(name.trim_end_matches('.')).map_err(ApiIdentityError::Request)?;
    params.subject_alt_names = std::iter::once(SanType::DnsName(dns))
        .chain(ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect();
    let pem = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(ApiIdentityError::Request)?;
    Ok(Csr {
        pem,
        key_created,
        key_path: dir.join(KEY_FILE),
    })
}

/// What [`install`] put in force.
#[derive(Debug)]
pub struct Installed {
    pub subject: String,
    pub not_after: String,
    /// The certificate's subjectAltNames (`DNS:…`, `IP:…`).
    pub names: Vec<String>,
    pub client_cas: usize,
    pub trusted_keys: Option<usize>,
    pub paths: InstalledPaths,
}

/// The files an operator hands to [`install`].
#[derive(Clone, Copy, Debug)]
pub struct InstallFrom<'a> {
    pub cert: &'a Path,
    pub client_ca: &'a Path,
    pub trusted_keys: Option<&'a Path>,
}

/// Checks the set against this box's key and `now`, then swaps it in (see the module comment).
pub fn install(
    dir: &Path,
    from: InstallFrom<'_>,
    now: SystemTime,
) -> Result<Installed, ApiIdentityError> {
    let key_path = dir.join(KEY_FILE);
    if !key_path.exists() {
        return Err(ApiIdentityError::NoKey {
            dir: dir.to_owned(),
        });
    }
    let (key, _) = load_or_create_key(dir)?;
    let chain = gateway_tls::load_certs(from.cert)?;
    let leaf = parse(from.cert, 0, &chain[0])?;
    let subject = leaf.subject().to_string();
    if leaf.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(ApiIdentityError::KeyMismatch {
            path: from.cert.to_owned(),
            subject,
            key: key_path,
        });
    }
    check_validity(from.cert, &leaf, &subject, now)?;
    check_server(from.cert, &leaf, &subject)?;
    let names = san_names(&leaf);
    let not_after = leaf.validity().not_after.to_string();

    let cas = gateway_tls::load_certs(from.client_ca)?;
    for (index, der) in cas.iter().enumerate() {
        let ca = parse(from.client_ca, index, der)?;
        if !ca.is_ca() {
            return Err(ApiIdentityError::NotCa {
                path: from.client_ca.to_owned(),
                index,
                subject: ca.subject().to_string(),
            });
        }
    }
    let trusted_keys = match from.trusted_keys {
        Some(path) => {
            // The file names itself in its errors (with the line); an empty one is refused too.
            let keys = gateway_api::TrustedKeys::load(path).map_err(|source| {
                ApiIdentityError::TrustedKeys {
                    path: path.to_owned(),
                    source,
                }
            })?;
            Some(keys.len())
        }
        None => None,
    };
    // The last word is rustls's, built exactly as gatewayd builds its server (gateway-tls).
    gateway_tls::server_config(
        &gateway_tls::Identity {
            cert: from.cert.to_owned(),
            key: key_path,
        },
        Some(from.client_ca),
    )?;

    swap_in(dir, from)?;
    Ok(Installed {
        subject,
        not_after,
        names,
        client_cas: cas.len(),
        trusted_keys,
        paths: InstalledPaths::in_dir(dir),
    })
}

fn parse<'a>(
    path: &Path,
    index: usize,
    der: &'a [u8],
) -> Result<X509Certificate<'a>, ApiIdentityError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| ApiIdentityError::Parse {
            path: path.to_owned(),
            index,
            detail: e.to_string(),
        })
}

fn check_validity(
    path: &Path,
    cert: &X509Certificate<'_>,
    subject: &str,
    now: SystemTime,
) -> Result<(), ApiIdentityError> {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let v = cert.validity();
    if secs < v.not_before.timestamp() {
        return Err(ApiIdentityError::NotYetValid {
            path: path.to_owned(),
            subject: subject.to_owned(),
            not_before: v.not_before.to_string(),
        });
    }
    if secs > v.not_after.timestamp() {
        return Err(ApiIdentityError::Expired {
            path: path.to_owned(),
            subject: subject.to_owned(),
            not_after: v.not_after.to_string(),
        });
    }
    Ok(())
}

/// A server certificate: not a CA, extendedKeyUsage names serverAuth (required: a certificate
/// without it would also pass as a person's client certificate elsewhere), and a keyUsage, if any,
/// allows digitalSignature (TLS 1.3 handshakes sign with it).
fn check_server(
    path: &Path,
    cert: &X509Certificate<'_>,
    subject: &str,
) -> Result<(), ApiIdentityError> {
    let refuse = |why| {
        Err(ApiIdentityError::NotServer {
            path: path.to_owned(),
            subject: subject.to_owned(),
            why,
        })
    };
    if cert.is_ca() {
        return refuse("it is a CA certificate (basicConstraints CA:TRUE)");
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.server_auth => {}
        Ok(Some(_)) => return refuse("extendedKeyUsage does not include serverAuth"),
        Ok(None) => return refuse("no extendedKeyUsage (serverAuth is required)"),
        Err(_) => return refuse("its extendedKeyUsage extension is malformed"),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => {
            refuse("keyUsage does not include digitalSignature")
        }
        Ok(_) => Ok(()),
        Err(_) => refuse("its keyUsage extension is malformed"),
    }
}

fn san_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| format!("IP:{}", IpAddr::from(a))),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| format!("IP:{}", IpAddr::from(a))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Copies the set into a fresh `api.<stamp>` directory (synced), points a new symlink at it and
/// renames that over `api` (atomic), then removes the set it replaced.
fn swap_in(dir: &Path, from: InstallFrom<'_>) -> Result<(), ApiIdentityError> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{INSTALLED}.{stamp}");
    let new = dir.join(&name);
    fs::create_dir(&new).map_err(io_err(&new))?;
    fs::set_permissions(&new, fs::Permissions::from_mode(0o700)).map_err(io_err(&new))?;
    let mut files = vec![(from.cert, CERT_FILE), (from.client_ca, CLIENT_CA_FILE)];
    if let Some(t) = from.trusted_keys {
        files.push((t, TRUSTED_KEYS_FILE));
    }
    for (src, file) in files {
        let bytes = fs::read(src).map_err(io_err(src))?;
        write_new(&new.join(file), &bytes, 0o644)?;
    }
    sync_dir(&new)?;
    let link = dir.join(INSTALLED);
    let previous = fs::read_link(&link).ok();
    let tmp = dir.join(format!("{INSTALLED}.link.tmp"));
    let _ = fs::remove_file(&tmp); // a leftover of an interrupted install
    std::os::unix::fs::symlink(&name, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &link).map_err(io_err(&link))?;
    sync_dir(dir)?;
    if let Some(old) = previous.filter(|p| p.as_os_str() != name.as_str()) {
        let old = dir.join(old);
        // Only our own `api.<stamp>` directories are removed.
        if old.parent() == Some(dir) && old.is_dir() {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), ApiIdentityError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The box's host name (`/proc/sys/kernel/hostname`), the default name of a request.
pub fn hostname() -> Result<String, ApiIdentityError> {
    let path = Path::new("/proc/sys/kernel/hostname");
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(io_err(path))
}
