//! Threat-intel feed parsers (R2): the formats gateways receive in practice.
//!
//! | format     | shape |
//! |------------|-------|
//! | `plain`    | one IPv4/IPv6 address or CIDR per line; `#` and `;` start comments (whole line or trailing) |
//! | `netset`   | FireHOL netset: `#` header, one address or CIDR per line |
//! | `ipset`    | FireHOL ipset: `#` header, one address per line (CIDRs accepted too) |
//! | `spamhaus` | Spamhaus DROP/EDROP text: `1.10.16.0/20 ; SBL256894`, `;` comments |
//! | `json`     | `["1.2.3.4", …]`, or `{"indicators": […]}` / `{"entries": […]}` whose items are strings or objects with a `"cidr"` or `"ip"` string (other keys ignored) |
//!
//! The line formats share one tolerant tokenizer (whitespace trimmed, CRLF accepted, comments
//! stripped); they differ only in name, so a policy says what the admin expects the file to be.
//!
//! A malformed entry refuses the whole feed with `file:line: entry: …` and the offending text: a
//! half-read feed would silently unblock what it failed to read, and the caller keeps the running
//! policy in force. One exception, by design: an entry with host bits set (`10.1.2.3/8`) is
//! normalised to its network, as ipset/iprange do, with a warning — a feed vendor's sloppiness must not
//! stop every other update, and the normalised prefix blocks at least what was meant.

use std::fmt;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{ErrorKind, PolicyError, SourceText, Warning, quote};
use crate::prefixes::{ParsedNet, parse_net};

/// Feed file formats, as named in the policy's `[[feed]] format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    Plain,
    Netset,
    Ipset,
    Spamhaus,
    Json,
}

impl FeedFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            FeedFormat::Plain => "plain",
            FeedFormat::Netset => "netset",
            FeedFormat::Ipset => "ipset",
            FeedFormat::Spamhaus => "spamhaus",
            FeedFormat::Json => "json",
        }
    }
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A prefix with the 1-based line of the feed it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sourced<N> {
    pub net: N,
    pub line: u32,
}

/// Everything a feed file contributes, in file order (duplicates included; the compiler dedupes).
#[derive(Debug, Default)]
pub struct FeedEntries {
    pub v4: Vec<Sourced<Ipv4Net>>,
    pub v6: Vec<Sourced<Ipv6Net>>,
    /// Entries normalised because they had host bits set.
    pub normalised: u64,
    pub warnings: Vec<Warning>,
}

impl FeedEntries {
    /// Entries read (before any de-duplication).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record one parsed entry, or say why it is refused.
    fn push(
        &mut self,
        src: &SourceText<'_>,
        line: u32,
        raw: &str,
        p: ParsedNet,
    ) -> Result<(), String> {
        if p.net.prefix_len() == 0 {
            return Err(format!(
                "{} would block every address of its family; refusing the feed",
                quote(raw)
            ));
        }
        if p.host_bits {
            self.normalised += 1;
            if self.normalised <= MAX_NORMALISE_WARNINGS {
                self.warnings.push(Warning {
                    path: src.path.to_path_buf(),
                    line,
                    field: "entry".into(),
                    message: format!("{} has host bits set; using {}", quote(raw), p.net),
                });
            }
        }
        match p.net {
            IpNet::V4(net) => self.v4.push(Sourced { net, line }),
            IpNet::V6(net) => self.v6.push(Sourced { net, line }),
        }
        Ok(())
    }

    fn finish(&mut self, src: &SourceText<'_>) {
        if self.normalised > MAX_NORMALISE_WARNINGS {
            self.warnings.push(Warning {
                path: src.path.to_path_buf(),
                line: 1,
                field: "entry".into(),
                message: format!(
                    "{} more entries with host bits set were normalised",
                    self.normalised - MAX_NORMALISE_WARNINGS
                ),
            });
        }
    }
}

/// Host-bit warnings reported one by one per feed; the rest are counted in one summary warning.
const MAX_NORMALISE_WARNINGS: u64 = 5;

/// Read and parse a feed file.
pub fn load_feed(path: &Path, format: FeedFormat) -> Result<FeedEntries, PolicyError> {
    let text = crate::error::read_file(path, path, 1, "file")?;
    parse_feed(&text, path, format)
}

/// Parse feed text; `path` is only used in messages.
pub fn parse_feed(text: &str, path: &Path, format: FeedFormat) -> Result<FeedEntries, PolicyError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = SourceText::new(path, text);
    let mut out = match format {
        FeedFormat::Plain | FeedFormat::Netset | FeedFormat::Ipset | FeedFormat::Spamhaus => {
            parse_lines(&src, format)?
        }
        FeedFormat::Json => parse_json(&src)?,
    };
    out.finish(&src);
    Ok(out)
}

/// Whether a byte starts a comment in a line format.
fn comment_bytes(format: FeedFormat) -> (u8, Option<u8>) {
    match format {
        // FireHOL files only use '#'.
        FeedFormat::Netset | FeedFormat::Ipset => (b'#', None),
        // Spamhaus DROP puts the SBL reference after ';' (and its header lines start with ';').
        FeedFormat::Spamhaus | FeedFormat::Plain | FeedFormat::Json => (b'#', Some(b';')),
    }
}

fn parse_lines(src: &SourceText<'_>, format: FeedFormat) -> Result<FeedEntries, PolicyError> {
    let (c1, c2) = comment_bytes(format);
    let is_comment = |b: u8| b == c1 || Some(b) == c2;
    let mut out = FeedEntries::default();
    // Feeds are mostly single addresses, 8 to 16 bytes a line: reserve once instead of regrowing.
    out.v4.reserve(src.text.len() / 12);
    // Byte-wise scanning: this loop runs a million times for big feeds. All delimiters are ASCII, so
    // slicing at their positions stays on char boundaries.
    for (i, raw_line) in src.text.split('\n').enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let bytes = raw_line.as_bytes();
        let end = bytes
            .iter()
            .position(|&b| is_comment(b))
            .unwrap_or(bytes.len());
        let token = raw_line[..end].trim_ascii();
        if token.is_empty() {
            continue;
        }
        let entry_error =
            |msg: String| PolicyError::new(ErrorKind::Invalid, src.path, line, "entry", msg);
        if token.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(entry_error(format!(
                "{} holds more than one item; expected one address or CIDR per line",
                quote(raw_line.trim_end())
            )));
        }
        let parsed = parse_net(token)
            .map_err(|e| entry_error(format!("{} {}", quote(token), e.describe())))?;
        out.push(src, line, token, parsed).map_err(entry_error)?;
    }
    Ok(out)
}

// --- JSON -------------------------------------------------------------------------------------------
//
// Parsed with serde seeds that push straight into `FeedEntries` (no intermediate `Value` tree of a
// million strings). serde_json tags errors raised inside the visitors with the line being read, which
// is the line of the offending string. Entry lines for warnings come from where the borrowed string
// lies in the input text.

fn parse_json(src: &SourceText<'_>) -> Result<FeedEntries, PolicyError> {
    let mut ctx = JsonCtx {
        src,
        out: FeedEntries::default(),
        cursor: 0,
    };
    let mut de = serde_json::Deserializer::from_str(src.text);
    let res = TopSeed(&mut ctx)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match res {
        Ok(()) => Ok(ctx.out),
        Err(e) => {
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let full = e.to_string();
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            let (kind, field) = match e.classify() {
                serde_json::error::Category::Data => (ErrorKind::Invalid, "entry"),
                _ => (ErrorKind::Syntax, "syntax"),
            };
            let line = u32::try_from(e.line()).unwrap_or(u32::MAX);
            Err(PolicyError::new(kind, src.path, line, field, message).with_source(e))
        }
    }
}

struct JsonCtx<'s, 't> {
    src: &'s SourceText<'t>,
    out: FeedEntries,
    /// Byte offset of the last entry seen, to place strings serde had to unescape (not borrowed).
    cursor: usize,
}

impl<'t> JsonCtx<'_, 't> {
    /// Byte offset of `s` in the input if it is a slice of it, else a search from the cursor.
    fn offset_of(&self, s: &str) -> usize {
        let base = self.src.text.as_ptr() as usize;
        let p = s.as_ptr() as usize;
        if p >= base && p + s.len() <= base + self.src.text.len() {
            return p - base;
        }
        let from = self.cursor.min(self.src.text.len());
        self.src
            .text
            .get(from..)
            .and_then(|rest| rest.find(s))
            .map_or(self.cursor, |i| from + i)
    }

    fn entry<E: de::Error>(&mut self, s: &str) -> Result<(), E> {
        let offset = self.offset_of(s);
        self.cursor = offset;
        let line = self.src.line_of(offset);
        let token = s.trim();
        let parsed =
            parse_net(token).map_err(|e| E::custom(format!("{} {}", quote(s), e.describe())))?;
        self.out
            .push(self.src, line, token, parsed)
            .map_err(E::custom)
    }
}

/// The document: an array of entries, or an object holding one under `indicators` or `entries`.
struct TopSeed<'c, 's, 't>(&'c mut JsonCtx<'s, 't>);

impl<'de, 'c, 's, 't> DeserializeSeed<'de> for TopSeed<'c, 's, 't> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "an array of indicators or an object with an \"indicators\" or \"entries\" array",
        )
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        ListSeed(self.0).visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "indicators" || key == "entries" {
                if let Some(prev) = &seen {
                    return Err(de::Error::custom(format!(
                        "both \"{prev}\" and \"{key}\" given; a feed holds one list"
                    )));
                }
                map.next_value_seed(ListSeed(&mut *self.0))?;
                seen = Some(key);
            } else {
                // Metadata (source, generated, licence…) is allowed and ignored.
                map.next_value::<IgnoredAny>()?;
            }
        }
        if seen.is_none() {
            return Err(de::Error::custom(
                "no \"indicators\" or \"entries\" array in the feed object",
            ));
        }
        Ok(())
    }
}

struct ListSeed<'c, 's, 't>(&'c mut JsonCtx<'s, 't>);

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of indicators")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ItemSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One indicator: `"1.2.3.4"` or `{"cidr": "1.2.3.0/24", …}` / `{"ip": "1.2.3.4", …}`.
struct ItemSeed<'c, 's, 't>(&'c mut JsonCtx<'s, 't>);

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address/CIDR string or an object with a \"cidr\" or \"ip\" string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.0.entry(s)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.entry(s)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "cidr" || key == "ip" {
                if let Some(prev) = &seen {
                    return Err(de::Error::custom(format!(
                        "indicator has both \"{prev}\" and \"{key}\"; give one"
                    )));
                }
                map.next_value_seed(StrSeed(&mut *self.0))?;
                seen = Some(key);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if seen.is_none() {
            return Err(de::Error::custom(
                "indicator object has no \"cidr\" or \"ip\"",
            ));
        }
        Ok(())
    }
}

/// The `cidr`/`ip` value of an indicator object: a string only.
struct StrSeed<'c, 's, 't>(&'c mut JsonCtx<'s, 't>);

impl<'de> DeserializeSeed<'de> for StrSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address or CIDR string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.0.entry(s)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.entry(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use super::*;

    fn parse(text: &str, f: FeedFormat) -> Result<FeedEntries, String> {
        parse_feed(text, Path::new("f.txt"), f).map_err(|e| e.to_string())
    }

    #[test]
    fn plain_with_comments_crlf_and_v6() {
        let text = "# header\r\n1.2.3.4\r\n\r\n  10.0.0.0/8  # trailing\n; semicolon comment\n2001:db8::/32\n";
        let e = parse(text, FeedFormat::Plain).unwrap();
        assert_eq!(e.v4.len(), 2);
        assert_eq!(e.v6.len(), 1);
        assert_eq!(e.v4[0].line, 2);
        assert_eq!(e.v4[1].net.to_string(), "10.0.0.0/8");
        assert_eq!(e.v4[1].line, 4);
        assert_eq!(e.v6[0].line, 6);
    }

    #[test]
    fn spamhaus_comment_after_semicolon() {
        let text =
            "; Spamhaus DROP List 2021/04/09\n1.10.16.0/20 ; SBL256894\n1.19.0.0/16 ; SBL434604\n";
        let e = parse(text, FeedFormat::Spamhaus).unwrap();
        assert_eq!(
            e.v4.iter().map(|s| s.net.to_string()).collect::<Vec<_>>(),
            ["1.10.16.0/20", "1.19.0.0/16"]
        );
    }

    #[test]
    fn malformed_line_is_an_error_with_line_and_text() {
        let err = parse("1.2.3.4\n1.2.3.999\n", FeedFormat::Netset).unwrap_err();
        assert_eq!(
            err,
            "f.txt:2: entry: \"1.2.3.999\" is not an IP address or CIDR"
        );
        let err = parse("1.2.3.4 5.6.7.8\n", FeedFormat::Plain).unwrap_err();
        assert_eq!(
            err,
            "f.txt:1: entry: \"1.2.3.4 5.6.7.8\" holds more than one item; expected one address or CIDR per line"
        );
        let err = parse("\n\n10.0.0.0/40\n", FeedFormat::Plain).unwrap_err();
        assert_eq!(
            err,
            "f.txt:3: entry: \"10.0.0.0/40\" has a prefix length beyond the address width"
        );
        let err = parse("0.0.0.0/0\n", FeedFormat::Plain).unwrap_err();
        assert_eq!(
            err,
            "f.txt:1: entry: \"0.0.0.0/0\" would block every address of its family; refusing the feed"
        );
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let e = parse("\u{feff}1.2.3.4\r\n", FeedFormat::Plain).unwrap();
        assert_eq!(e.v4[0].line, 1);
        let e = parse("\u{feff}[\"1.2.3.4\"]", FeedFormat::Json).unwrap();
        assert_eq!(e.v4.len(), 1);
    }

    #[test]
    fn netset_semicolon_is_not_a_comment() {
        // FireHOL files never use ';': text after it is garbage, not a comment.
        let err = parse("1.2.3.4;x\n", FeedFormat::Netset).unwrap_err();
        assert_eq!(
            err,
            "f.txt:1: entry: \"1.2.3.4;x\" is not an IP address or CIDR"
        );
    }

    #[test]
    fn host_bits_are_normalised_with_a_warning() {
        let text = (1..=7)
            .map(|i| format!("10.0.{i}.1/16\n"))
            .collect::<String>();
        let e = parse(&text, FeedFormat::Plain).unwrap();
        assert_eq!(e.normalised, 7);
        assert_eq!(e.v4[0].net.to_string(), "10.0.0.0/16");
        assert_eq!(e.warnings.len(), 6);
        assert_eq!(
            e.warnings[0].to_string(),
            "f.txt:1: entry: \"10.0.1.1/16\" has host bits set; using 10.0.0.0/16"
        );
        assert_eq!(
            e.warnings[5].to_string(),
            "f.txt:1: entry: 2 more entries with host bits set were normalised"
        );
    }

    #[test]
    fn json_shapes() {
        let arr = parse("[\"1.2.3.4\", \"2001:db8::/48\"]", FeedFormat::Json).unwrap();
        assert_eq!((arr.v4.len(), arr.v6.len()), (1, 1));
        let obj = r#"{
  "source": "provincial SOC",
  "indicators": [
    {"cidr": "198.18.7.0/24", "comment": "c2"},
    {"ip": "192.0.2.7", "first_seen": "2026-01-01"},
    "2001:db8:dead::/48"
  ]
}"#;
        let e = parse(obj, FeedFormat::Json).unwrap();
        assert_eq!(
            e.v4.iter()
                .map(|s| (s.net.to_string(), s.line))
                .collect::<Vec<_>>(),
            [
                ("198.18.7.0/24".to_string(), 4),
                ("192.0.2.7/32".to_string(), 5)
            ]
        );
        assert_eq!(e.v6[0].line, 6);
        let entries = parse(r#"{"entries": ["10.0.0.1"]}"#, FeedFormat::Json).unwrap();
        assert_eq!(entries.v4.len(), 1);
    }

    #[test]
    fn json_errors_name_the_line() {
        let bad = "{\n  \"indicators\": [\n    \"1.2.3.4\",\n    {\"cidr\": \"300.1.1.1\"}\n  ]\n}";
        assert_eq!(
            parse(bad, FeedFormat::Json).unwrap_err(),
            "f.txt:4: entry: \"300.1.1.1\" is not an IP address or CIDR"
        );
        let no_list = "{\n \"source\": \"x\"\n}";
        assert_eq!(
            parse(no_list, FeedFormat::Json).unwrap_err(),
            "f.txt:3: entry: no \"indicators\" or \"entries\" array in the feed object"
        );
        let no_cidr = "[\n {\"comment\": \"x\"}\n]";
        assert_eq!(
            parse(no_cidr, FeedFormat::Json).unwrap_err(),
            "f.txt:2: entry: indicator object has no \"cidr\" or \"ip\""
        );
        let num = "[\n 12\n]";
        assert_eq!(
            parse(num, FeedFormat::Json).unwrap_err(),
            "f.txt:2: entry: invalid type: integer `12`, expected an address/CIDR string or an object with a \"cidr\" or \"ip\" string"
        );
        let syntax = "[\n\"1.2.3.4\",\n";
        assert_eq!(
            parse(syntax, FeedFormat::Json).unwrap_err(),
            "f.txt:3: syntax: EOF while parsing a value"
        );
        let both = r#"{"indicators": [], "entries": []}"#;
        assert!(
            parse(both, FeedFormat::Json)
                .unwrap_err()
                .contains("both \"indicators\" and \"entries\"")
        );
    }

    #[test]
    fn json_escaped_strings_still_get_a_line() {
        let text = "[\n\"1.2.3.4\",\n\"10.0.0.1\\/8\"\n]";
        let e = parse(text, FeedFormat::Json).unwrap();
        assert_eq!(e.v4[1].net.to_string(), "10.0.0.0/8");
        assert_eq!(
            e.warnings[0].line, 2,
            "unescaped text is searched from the previous entry"
        );
    }
}
