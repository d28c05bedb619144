//! TLS for every link the gateway opens or serves: flow export and syslog to the SOC (clients), the
//! metrics endpoint and the management API (servers, optionally demanding client certificates).
//!
//! Certificates, keys and CA bundles are PEM files. Only TLS 1.2 and 1.3 with rustls' default
//! (ring) cipher suites; no way to turn verification off exists here on purpose.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {what}: {source}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no {what} in the file")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: CA certificate refused: {source}")]
    Ca {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("certificate and key do not make a usable identity: {0}")]
    Identity(#[source] rustls::Error),
}

/// A certificate chain (leaf first) and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (a chain or a CA bundle); an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            what: "certificates",
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: path.to_owned(),
            what: "private key",
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            what: "private key",
            source,
        },
    })
}

/// Trust anchors from a CA bundle.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::Ca {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// A client that trusts only the CAs of `ca` (never the system store: a SOC collector has a
/// certificate from the SOC's own CA) and presents `identity` when given.
pub fn client_config(
    ca: &Path,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Identity)?
        .with_root_certificates(load_roots(ca)?);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(load_certs(&id.cert)?, load_key(&id.key)?)
            .map_err(TlsError::Identity)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A client for public HTTPS servers (remote feeds): trusts the CAs of `ca` when given, else the
/// Mozilla root program compiled into the firmware (webpki-roots).
///
/// Why compiled-in roots rather than the OS store: the firmware image is minimal and read-only, and
/// its roots change only with a signed image update; a compiled-in list is the same on every box
/// and needs no `/etc/ssl` in the image. A feed served by a private CA names it with `ca`.
pub fn https_client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca {
        Some(ca) => load_roots(ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Identity)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server presenting `identity`. With `client_ca`, every client must present a certificate that
/// chains to it (mutual TLS); without, clients are anonymous.
pub fn server_config(
    identity: &Identity,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Identity)?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                .build()?,
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(load_certs(&identity.cert)?, load_key(&identity.key)?)
        .map_err(TlsError::Identity)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn builds_client_and_mutual_server_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["gateway.test".to_owned()])
            .and_then(|p| p.signed_by(&leaf_key, &issuer))
            .expect("leaf");
        let ca_path = write(dir.path(), "ca.pem", &ca.pem());
        let id = Identity {
            cert: write(dir.path(), "leaf.pem", &leaf.pem()),
            key: write(dir.path(), "leaf.key", &leaf_key.serialize_pem()),
        };
        client_config(&ca_path, Some(&id)).expect("client");
        server_config(&id, Some(&ca_path)).expect("server");
        server_config(&id, None).expect("server without client auth");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = write(dir.path(), "empty.pem", "");
        let e = client_config(&empty, None).expect_err("empty CA");
        assert!(e.to_string().contains("empty.pem"), "{e}");
        assert!(e.to_string().contains("no certificate"), "{e}");
        let garbage = write(
            dir.path(),
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        let e = load_certs(&garbage).expect_err("garbage");
        assert!(e.to_string().contains("bad.pem"), "{e}");
    }
}
