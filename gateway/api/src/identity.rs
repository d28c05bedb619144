//! Who is asking, from the client certificate rustls has already verified against the admin CA.
//!
//! **Role convention:** the certificate's subject carries exactly one organizational unit (OU)
//! naming the role — `OU=admin` or `OU=soc` (e.g. `openssl req -subj "/O=Gateway fleet/OU=admin
//! /CN=alice"`). A certificate with no OU, an unknown OU, or more than one OU has no role and every
//! request with it is refused (403). The subject's CN and the serial number name the person in the
//! audit log and the history.
//!
//! The certificate is read with `x509-parser` (webpki verifies but does not expose the subject).
use std::fmt;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::audit::Who;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: validate, apply, confirm, rollback, export, and every read.
    Admin,
    /// Reads only: status, counters, history, audit.
    Soc,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Soc => "soc",
        }
    }

    fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            "admin" => Some(Role::Admin),
            "soc" => Some(Role::Soc),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a verified certificate gives no access.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error(
        "certificate {subject:?} carries no role: its subject needs one OU, \"admin\" or \"soc\""
    )]
    None { subject: String },
    #[error("certificate {subject:?} has OU {ou:?}, which is not a role (\"admin\" or \"soc\")")]
    Unknown { subject: String, ou: String },
    #[error(
        "certificate {subject:?} has {count} OUs; exactly one, \"admin\" or \"soc\", is allowed"
    )]
    Several { subject: String, count: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("client certificate does not parse as X.509")]
    Parse(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
}

/// The client of one TLS connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub who: Who,
    pub role: Result<Role, RoleError>,
}

impl ClientIdentity {
    /// Reads a verified end-entity certificate (DER).
    pub fn from_der(der: &[u8]) -> Result<ClientIdentity, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(IdentityError::Parse)?;
        let subject_name = cert.subject();
        let subject = subject_name.to_string();
        let cn = subject_name
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("")
            .to_owned();
        let ous: Vec<String> = subject_name
            .iter_organizational_unit()
            .map(|a| a.as_str().map(str::to_owned).unwrap_or_default())
            .collect();
        let role = match ous.as_slice() {
            [] => Err(RoleError::None {
                subject: subject.clone(),
            }),
            [ou] => Role::from_ou(ou).ok_or_else(|| RoleError::Unknown {
                subject: subject.clone(),
                ou: ou.clone(),
            }),
            many => Err(RoleError::Several {
                subject: subject.clone(),
                count: many.len(),
            }),
        };
        Ok(ClientIdentity {
            who: Who {
                cn,
                serial: cert.raw_serial_as_string(),
                role: role.as_ref().ok().map(|r| r.as_str().to_owned()),
                subject,
            },
            role,
        })
    }
}

/// Who acts and from where, as the lifecycle operations record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub who: Who,
    /// Peer address, or `local` for the daemon's own socket.
    pub from: String,
}

impl Actor {
    pub fn new(who: Who, from: impl Into<String>) -> Actor {
        Actor {
            who,
            from: from.into(),
        }
    }

    /// The daemon acting by itself (commit-confirm revert, adopting its start policy).
    pub fn daemon() -> Actor {
        Actor {
            who: Who::daemon(),
            from: "local".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: &[(rcgen::DnType, &str)]) -> anyhow::Result<Vec<u8>> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x3f, 0x9a]));
        Ok(params.self_signed(&key)?.der().to_vec())
    }

    #[test]
    fn reads_role_name_and_serial() -> anyhow::Result<()> {
        use rcgen::DnType::*;
        let id = ClientIdentity::from_der(&cert(&[
            (OrganizationName, "Ward 7"),
            (OrganizationalUnitName, "admin"),
            (CommonName, "alice"),
        ])?)?;
        assert_eq!(id.role, Ok(Role::Admin));
        assert_eq!(id.who.cn, "alice");
        assert_eq!(id.who.serial, "3f:9a");
        assert_eq!(id.who.role.as_deref(), Some("admin"));
        assert!(id.who.subject.contains("CN=alice"), "{}", id.who.subject);
        assert!(id.who.subject.contains("OU=admin"), "{}", id.who.subject);

        let soc = ClientIdentity::from_der(&cert(&[
            (OrganizationalUnitName, "soc"),
            (CommonName, "soc-analyst"),
        ])?)?;
        assert_eq!(soc.role, Ok(Role::Soc));
        Ok(())
    }

    #[test]
    fn no_unknown_or_several_roles_give_no_access() -> anyhow::Result<()> {
        use rcgen::DnType::*;
        let none = ClientIdentity::from_der(&cert(&[(CommonName, "bob")])?)?;
        assert!(matches!(none.role, Err(RoleError::None { .. })));
        assert_eq!(none.who.role, None);
        let unknown = ClientIdentity::from_der(&cert(&[
            (OrganizationalUnitName, "Admin"),
            (CommonName, "bob"),
        ])?)?;
        assert!(
            matches!(&unknown.role, Err(RoleError::Unknown { ou, .. }) if ou == "Admin"),
            "roles are case-sensitive: {:?}",
            unknown.role
        );
        // rcgen keeps one value per attribute type; a subject with two OUs is minted with openssl
        // in tests/openssl.rs.
        Ok(())
    }
}
