//! Domain-name normalisation: the one spelling a name has in the compiled set and the data path.
//!
//! Lowercase ASCII, no trailing dot, internationalised labels as punycode (`xn--…`, UTS #46 via the
//! `idna` crate), labels of 1–63 bytes, at most 253 characters, and only letters, digits, `-` and `_`
//! (underscore: real names such as `_dmarc.example` and many tracking hosts use it). Hyphen position
//! is not checked: malware domains such as `-x-.example` resolve and must stay blockable.
//!
//! ASCII names take a fast path that never touches `idna` (a million-line feed is nearly all ASCII).
//! Existing `xn--` labels are kept as they are, not decoded and re-checked: the data path compares
//! the bytes a resolver sends, and a malformed `xn--` label can still be queried and blocked.

use std::fmt;

use gateway_common::dname::{MAX_LABEL_LEN, MAX_TEXT_LEN};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Why a name cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    EmptyLabel,
    LabelTooLong {
        label: String,
        len: usize,
    },
    TooLong {
        len: usize,
    },
    BadChar(char),
    /// UTS #46 refused the internationalised name (disallowed code point, bad bidi, …).
    Idna,
    /// The last label is all digits: an IP address (or a typo of one), not a domain name.
    Numeric,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("is empty"),
            NameError::EmptyLabel => f.write_str("has an empty label (two dots in a row)"),
            NameError::LabelTooLong { label, len } => write!(
                f,
                "has a label of {len} bytes ({}); at most {MAX_LABEL_LEN}",
                crate::error::quote(label)
            ),
            NameError::TooLong { len } => {
                write!(f, "is {len} characters long; at most {MAX_TEXT_LEN}")
            }
            NameError::BadChar(c) => write!(
                f,
                "contains '{}'; a domain name holds letters, digits, '-' and '_'",
                c.escape_debug()
            ),
            NameError::Idna => {
                f.write_str("is not a valid internationalised domain name (UTS #46)")
            }
            NameError::Numeric => {
                f.write_str("is an IP address, not a domain name (addresses belong in an IP feed)")
            }
        }
    }
}

/// The normalised spelling of `raw` (see the module doc).
pub fn normalise(raw: &str) -> Result<String, NameError> {
    let mut out = String::with_capacity(raw.len());
    normalise_into(raw, &mut out)?;
    Ok(out)
}

/// Append the normalised spelling of `raw` to `out`; on error `out` is left as it was.
pub(crate) fn normalise_into(raw: &str, out: &mut String) -> Result<(), NameError> {
    let raw = raw.strip_suffix('.').unwrap_or(raw);
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    let mark = out.len();
    let res = if raw.is_ascii() {
        push_ascii(raw, out)
    } else {
        // UTS #46 maps (case, width, compatibility forms, ideographic full stops) and encodes; the
        // empty deny list lets '_' through, and `push_ascii` then applies our own character rules.
        match Uts46::new().to_ascii(
            raw.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Allow,
            DnsLength::Ignore,
        ) {
            Ok(ascii) => push_ascii(ascii.strip_suffix('.').unwrap_or(&ascii), out),
            Err(_) => Err(NameError::Idna),
        }
    };
    if res.is_err() {
        out.truncate(mark);
    }
    res
}

/// Lowercase and check an ASCII name onto `out`.
fn push_ascii(name: &str, out: &mut String) -> Result<(), NameError> {
    if name.len() > MAX_TEXT_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    let mut last_label_numeric = true;
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong {
                label: label.to_string(),
                len: label.len(),
            });
        }
        if let Some(bad) = label
            .bytes()
            .find(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(NameError::BadChar(char::from(bad)));
        }
        last_label_numeric = label.bytes().all(|b| b.is_ascii_digit());
    }
    if last_label_numeric {
        return Err(NameError::Numeric);
    }
    out.extend(name.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    #[test]
    fn case_dot_and_idna() {
        assert_eq!(normalise("WWW.Example.COM.").unwrap(), "www.example.com");
        assert_eq!(
            normalise("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalise("BÜCHER.example.").unwrap(),
            "xn--bcher-kva.example"
        );
        // Ideographic full stop and full-width letters are mapped by UTS #46.
        assert_eq!(normalise("ｅｘａｍｐｌｅ。com").unwrap(), "example.com");
        assert_eq!(
            normalise("_dmarc.Example.org").unwrap(),
            "_dmarc.example.org"
        );
        assert_eq!(
            normalise("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(normalise("").unwrap_err(), NameError::Empty);
        assert_eq!(normalise(".").unwrap_err(), NameError::Empty);
        assert_eq!(normalise("a..b").unwrap_err(), NameError::EmptyLabel);
        assert_eq!(normalise("a.b..").unwrap_err(), NameError::EmptyLabel);
        assert_eq!(
            normalise("ex@mple.com").unwrap_err(),
            NameError::BadChar('@')
        );
        assert_eq!(normalise("a/b.com").unwrap_err(), NameError::BadChar('/'));
        assert_eq!(normalise("1.2.3.4").unwrap_err(), NameError::Numeric);
        assert!(normalise("1x.2.3.example").is_ok());
        let long_label = "a".repeat(64);
        assert!(matches!(
            normalise(&format!("{long_label}.com")).unwrap_err(),
            NameError::LabelTooLong { len: 64, .. }
        ));
        let long_name = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(
            normalise(&long_name).unwrap_err(),
            NameError::TooLong { len: 255 }
        );
        let max_name = format!(
            "{}.{}",
            ["a".repeat(63).as_str(); 3].join("."),
            "b".repeat(61)
        );
        assert_eq!(normalise(&max_name).unwrap().len(), 253);
        assert_eq!(
            normalise("a\u{200b}\u{fffd}.com").unwrap_err(),
            NameError::Idna
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            NameError::BadChar('@').to_string(),
            "contains '@'; a domain name holds letters, digits, '-' and '_'"
        );
        assert_eq!(
            NameError::BadChar('\t').to_string(),
            "contains '\\t'; a domain name holds letters, digits, '-' and '_'"
        );
    }
}
