//! `gatewayctl identity csr` / `install` (the library half): the request names the box, the key is
//! made once with mode 0600, and install takes only a certificate for that key, valid now, for a
//! server, with a CA file of CAs — all of it or nothing.
#![allow(clippy::unwrap_used)] // reason: tests

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use gateway_daemon::api_identity::{
    self, ApiIdentityError, CERT_FILE, CLIENT_CA_FILE, INSTALLED, InstallFrom, KEY_FILE,
    TRUSTED_KEYS_FILE,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A certificate for `subject_key`, issued by `ca`, shaped by `edit`.
fn issue(ca: &Ca, subject_key: &KeyPair, edit: impl FnOnce(&mut CertificateParams)) -> String {
    let mut params = CertificateParams::new(vec!["gw-test.example.internal".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "gw-test");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    edit(&mut params);
    let issuer = Issuer::new(ca.params.clone(), &ca.key);
    params.signed_by(subject_key, &issuer).unwrap().pem()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn box_key(dir: &Path) -> KeyPair {
    KeyPair::from_pem(&std::fs::read_to_string(dir.join(KEY_FILE)).unwrap()).unwrap()
}

#[test]
fn csr_makes_the_key_once_and_names_the_box() {
    let d = tempfile::tempdir().unwrap();
    let id = d.path().join("identity");
    let ips: Vec<IpAddr> = vec!["10.10.0.1".parse().unwrap(), "fd00:10::1".parse().unwrap()];
    let first = api_identity::csr(&id, "gw-ward7.example.internal", &ips).unwrap();
    assert!(first.key_created);
    assert!(first.pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let mode = std::fs::metadata(id.join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read(id.join(KEY_FILE)).unwrap();
    let again = api_identity::csr(&id, "gw-ward7.example.internal", &ips).unwrap();
    assert!(!again.key_created);
    assert_eq!(
        std::fs::read(id.join(KEY_FILE)).unwrap(),
        key,
        "the key is never replaced"
    );

    // The request as the CA sees it: subject, SANs, the box's public key (openssl checks the
    // signature in the README test and the image boot test).
    let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(first.pem.as_bytes())
        .unwrap();
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .unwrap();

    let info = &req.certification_request_info;
    assert_eq!(
        info.subject.to_string(),
        "O=Gateway fleet, CN=gw-ward7.example.internal"
    );
    let mut sans = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            sans.extend(san.general_names.iter().map(|n| n.to_string()));
        }
    }
    assert_eq!(
        sans,
        [
            "DNSName(gw-ward7.example.internal)",
            "IPAddress(0a:0a:00:01)",
            "IPAddress(fd:00:00:10:00:00:00:00:00:00:00:00:00:00:00:01)"
        ]
    );
    assert_eq!(
        info.subject_pki.raw,
        rcgen::PublicKeyData::subject_public_key_info(&box_key(&id)).as_slice()
    );
}

#[test]
fn csr_refuses_names_a_certificate_cannot_carry() {
    let d = tempfile::tempdir().unwrap();
    for bad in ["", "gw ward7", "-gw", "gw..x", "gw_7", &"a".repeat(64)] {
        let e = api_identity::csr(d.path(), bad, &[]).unwrap_err();
        assert!(
            matches!(e, ApiIdentityError::BadName { .. }),
            "{bad:?}: {e}"
        );
    }
    assert!(
        !d.path().join(KEY_FILE).exists(),
        "no key made for a refused request"
    );
}

#[test]
fn install_checks_everything_then_swaps_the_set_whole() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("identity");
    let files = tempfile::tempdir().unwrap();
    let f = files.path();
    let device_ca = ca("device CA");
    let admin_ca = ca("admin CA");
    let admin_ca_pem = write(f, "admin-ca.pem", &admin_ca.pem);

    // Before any request there is no key to install for.
    let other_key = KeyPair::generate().unwrap();
    let stray = write(f, "stray.pem", &issue(&device_ca, &other_key, |_| {}));
    let from = |cert| InstallFrom {
        cert,
        client_ca: &admin_ca_pem,
        trusted_keys: None,
    };
    let e = api_identity::install(&dir, from(&stray), SystemTime::now()).unwrap_err();
    assert!(matches!(e, ApiIdentityError::NoKey { .. }), "{e}");

    api_identity::csr(&dir, "gw-test", &[]).unwrap();
    let key = box_key(&dir);
    let now = SystemTime::now();
    let refused = |cert: &Path, client_ca: &Path, trusted: Option<&Path>, at| {
        let from = InstallFrom {
            cert,
            client_ca,
            trusted_keys: trusted,
        };
        api_identity::install(&dir, from, at).unwrap_err()
    };

    // Another key's certificate.
    let e = refused(&stray, &admin_ca_pem, None, now);
    assert!(matches!(e, ApiIdentityError::KeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("stray.pem"), "{e}");
    // A client certificate (person's), a CA certificate, no EKU.
    let client = write(
        f,
        "client.pem",
        &issue(&device_ca, &key, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }),
    );
    let e = refused(&client, &admin_ca_pem, None, now);
    assert!(e.to_string().contains("does not include serverAuth"), "{e}");
    let as_ca = write(
        f,
        "ca-flag.pem",
        &issue(&device_ca, &key, |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }),
    );
    let e = refused(&as_ca, &admin_ca_pem, None, now);
    assert!(e.to_string().contains("is a CA certificate"), "{e}");
    let no_eku = write(
        f,
        "no-eku.pem",
        &issue(&device_ca, &key, |p| p.extended_key_usages.clear()),
    );
    let e = refused(&no_eku, &admin_ca_pem, None, now);
    assert!(e.to_string().contains("no extendedKeyUsage"), "{e}");

    // A good one, but checked at a time outside its validity.
    let good = write(f, "box.pem", &issue(&device_ca, &key, |_| {}));
    let e = refused(
        &good,
        &admin_ca_pem,
        None,
        now + Duration::from_secs(100 * 366 * 86400),
    );
    assert!(matches!(e, ApiIdentityError::Expired { .. }), "{e}");
    let e = refused(&good, &admin_ca_pem, None, SystemTime::UNIX_EPOCH);
    assert!(matches!(e, ApiIdentityError::NotYetValid { .. }), "{e}");
    // A client CA file that holds a leaf, a garbage file, a bad signers' file.
    let e = refused(&good, &good, None, now);
    assert!(matches!(e, ApiIdentityError::NotCa { .. }), "{e}");
    let garbage = write(f, "garbage.pem", "not pem\n");
    let e = refused(&good, &garbage, None, now);
    assert!(e.to_string().contains("garbage.pem"), "{e}");
    let bad_keys = write(f, "signers.pub", "# signers\nzz-not-hex\n");
    let e = refused(&good, &admin_ca_pem, Some(&bad_keys), now);
    assert!(
        e.to_string().contains("signers.pub") && e.to_string().contains('2'),
        "{e}"
    );
    assert!(
        !dir.join(INSTALLED).exists(),
        "nothing installed by a refusal"
    );

    // Installed: the link points at a complete set.
    let installed = api_identity::install(&dir, from(&good), now).unwrap();
    assert_eq!(installed.names, ["DNS:gw-test.example.internal"]);
    assert_eq!(installed.trusted_keys, None);
    let set = dir.join(INSTALLED);
    assert!(
        std::fs::symlink_metadata(&set)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(set.join(CERT_FILE)).unwrap(),
        std::fs::read_to_string(&good).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(set.join(CLIENT_CA_FILE)).unwrap(),
        admin_ca.pem
    );
    assert!(!set.join(TRUSTED_KEYS_FILE).exists());
    assert_eq!(installed.paths.trusted_keys, None);
    let first_target = std::fs::read_link(&set).unwrap();

    // A refused re-install leaves it in force; a good one replaces it whole (and the old set goes).
    let e = refused(&client, &admin_ca_pem, None, now);
    assert!(matches!(e, ApiIdentityError::NotServer { .. }), "{e}");
    assert_eq!(std::fs::read_link(&set).unwrap(), first_target);
    let signers = write(
        f,
        "signers-ok.pub",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a # rfc8032\n",
    );
    let renewed = write(f, "box2.pem", &issue(&device_ca, &key, |_| {}));
    let installed = api_identity::install(
        &dir,
        InstallFrom {
            cert: &renewed,
            client_ca: &admin_ca_pem,
            trusted_keys: Some(&signers),
        },
        now,
    )
    .unwrap();
    assert_eq!(installed.trusted_keys, Some(1));
    assert_eq!(
        installed.paths.trusted_keys,
        Some(set.join(TRUSTED_KEYS_FILE))
    );
    assert_ne!(std::fs::read_link(&set).unwrap(), first_target);
    assert!(
        !dir.join(first_target).exists(),
        "the replaced set is removed"
    );
    assert_eq!(
        std::fs::read_to_string(set.join(CERT_FILE)).unwrap(),
        std::fs::read_to_string(&renewed).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
