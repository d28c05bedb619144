//! DNS Response Policy Zones (draft-vixie-dnsop-dns-rpz) as master files (RFC 1035 §5): the format
//! resolvers (BIND, Unbound, Knot, PowerDNS) load and threat-intel vendors publish.
//!
//! Owner names are *triggers*, relative to the zone apex (`bad.example.rpz.local.` or, under
//! `$ORIGIN rpz.local.`, just `bad.example`); the record says the *action*. Query-name triggers are
//! what a gateway seeing DNS queries can enforce:
//!
//! | record | here |
//! |--------|------|
//! | `name CNAME .` (NXDOMAIN), `name CNAME *.` (NODATA), `name CNAME rpz-drop.` | block `name` |
//! | `*.name CNAME .` (any of the above) | block every name under `name`, not `name` itself ([`Scope::Below`](super::Scope::Below)) |
//! | `name CNAME rpz-passthru.` (or, the old form, a CNAME to the owner name itself) | exception: never blocked, even under a blocked parent |
//! | `name A 192.0.2.1`, `name AAAA 2001:db8::1` (local data) | block, the address noted as the sinkhole |
//! | `name CNAME walled.garden.`, other local data (TXT, MX, …) | block |
//! | `name CNAME rpz-tcp-only.` | skipped with a warning: not a block |
//! | `….rpz-ip`, `….rpz-nsip`, `….rpz-nsdname`, `….rpz-client-ip` triggers | skipped with a warning: they act on answers, name servers or clients, which a query filter does not see |
//! | SOA, NS and DNSSEC records; any record at the apex | skipped (zone infrastructure) |
//!
//! The zone apex is the SOA's owner name, else the first `$ORIGIN`; without either, owner names are
//! taken as triggers as written (relative). `$ORIGIN` and `$TTL` are understood, `$INCLUDE` and
//! `$GENERATE` refused (the zone would be incomplete). Parentheses continue a record over lines (the
//! usual multi-line SOA); `;` starts a comment outside quoted strings. TTL and class (`IN` only) may
//! precede the type in either order; an indented record inherits the previous owner.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Action, DomainEntries, Scope, line_no};
use crate::error::{PolicyError, quote};

/// Record types that belong to the zone's own operation, never triggers.
const INFRASTRUCTURE: &[&str] = &[
    "SOA",
    "NS",
    "RRSIG",
    "NSEC",
    "NSEC3",
    "NSEC3PARAM",
    "DNSKEY",
    "DS",
    "CDS",
    "CDNSKEY",
    "ZONEMD",
];

pub(super) fn parse(text: &str, out: &mut DomainEntries) -> Result<(), PolicyError> {
    let mut lexer = Lexer {
        lines: text.split('\n').enumerate(),
    };
    let mut zone = Zone::default();
    let mut tokens = Vec::new();
    while let Some(start) = lexer
        .next_record(&mut tokens)
        .map_err(|(line, message)| out.syntax(line, message))?
    {
        if !tokens.is_empty() {
            record(&mut zone, start, &tokens, out)?;
        }
    }
    Ok(())
}

// --- Records ----------------------------------------------------------------------------------------

/// Where owner names are relative to, as the file goes on. Names are lowercase; absolute ones end
/// with a dot.
#[derive(Default)]
struct Zone {
    /// The zone's own name; triggers are owner names relative to it.
    apex: Option<String>,
    /// Whether `apex` came from the SOA (final) or from the first `$ORIGIN` (until an SOA says).
    apex_from_soa: bool,
    /// The current `$ORIGIN`.
    origin: Option<String>,
    /// Owner of the previous record, for indented records.
    last_owner: Option<Owner>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Owner {
    Apex,
    /// Relative to the apex, no trailing dot.
    Trigger(String),
}

/// What a record asks for.
enum Rule {
    Block(Option<IpAddr>),
    Pass,
    Unsupported(String),
}

fn join(relative: &str, origin: &str) -> String {
    if origin == "." {
        format!("{relative}.")
    } else {
        format!("{relative}.{origin}")
    }
}

impl Zone {
    /// `name` made absolute against the current origin; `None` if it is relative and there is none.
    fn absolute(&self, name: &str) -> Option<String> {
        if name == "@" {
            return self.origin.clone();
        }
        if name.ends_with('.') {
            return Some(name.to_string());
        }
        self.origin.as_deref().map(|o| join(name, o))
    }

    fn owner(&self, token: &str) -> Result<Owner, String> {
        let name = token.to_ascii_lowercase();
        // Fast path for the usual zone: relative owners under `$ORIGIN <apex>`.
        if !name.ends_with('.') && name != "@" && self.origin.is_some() && self.origin == self.apex
        {
            return Ok(Owner::Trigger(name));
        }
        match self.absolute(&name) {
            Some(abs) => self.relative_to_apex(&abs),
            None if name == "@" => Ok(Owner::Apex),
            None => Ok(Owner::Trigger(name)),
        }
    }

    fn relative_to_apex(&self, abs: &str) -> Result<Owner, String> {
        let Some(apex) = &self.apex else {
            return Err(format!(
                "{} is an absolute name, but the zone has no SOA or $ORIGIN naming its apex",
                quote(abs)
            ));
        };
        if abs == apex {
            return Ok(Owner::Apex);
        }
        if apex == "." {
            return Ok(Owner::Trigger(abs.trim_end_matches('.').to_string()));
        }
        match abs
            .strip_suffix(apex.as_str())
            .and_then(|p| p.strip_suffix('.'))
        {
            Some(prefix) if !prefix.is_empty() => Ok(Owner::Trigger(prefix.to_string())),
            _ => Err(format!("{} is outside the zone {apex}", quote(abs))),
        }
    }

    /// The trigger as an absolute name (for the old passthru form, a CNAME to itself).
    fn absolute_trigger(&self, trigger: &str) -> String {
        match self.apex.as_deref() {
            Some(apex) => join(trigger, apex),
            None => trigger.to_string(),
        }
    }

    fn directive(
        &mut self,
        line: u32,
        tokens: &[&str],
        out: &DomainEntries,
    ) -> Result<(), PolicyError> {
        let name = tokens[0].to_ascii_uppercase();
        match name.as_str() {
            "$ORIGIN" => {
                let Some(arg) = tokens.get(1) else {
                    return Err(out.syntax(line, "$ORIGIN needs a name".into()));
                };
                let arg = arg.to_ascii_lowercase();
                let Some(abs) = self.absolute(&arg) else {
                    return Err(out.syntax(
                        line,
                        format!("relative $ORIGIN {} with no origin before it", quote(&arg)),
                    ));
                };
                if self.apex.is_none() {
                    self.apex = Some(abs.clone());
                }
                self.origin = Some(abs);
                Ok(())
            }
            "$TTL" => Ok(()),
            "$INCLUDE" | "$GENERATE" => Err(out.syntax(
                line,
                format!("{name} is not supported; give the zone as one file"),
            )),
            _ => Err(out.syntax(line, format!("unknown directive {}", quote(tokens[0])))),
        }
    }

    /// The SOA record names the apex (once); `$ORIGIN` only stood in for it.
    fn soa(&mut self, owner_token: Option<&str>) {
        if self.apex_from_soa {
            return;
        }
        let abs = match owner_token {
            Some(t) => self.absolute(&t.to_ascii_lowercase()),
            None => None,
        };
        if let Some(abs) = abs {
            self.origin.get_or_insert_with(|| abs.clone());
            self.apex = Some(abs);
            self.apex_from_soa = true;
        }
    }

    fn cname(&self, target: &str, trigger: &str) -> Rule {
        let target = target.to_ascii_lowercase();
        match target.as_str() {
            "." | "*." | "rpz-drop." => Rule::Block(None),
            "rpz-passthru." => Rule::Pass,
            "rpz-tcp-only." => Rule::Unsupported(format!(
                "{} CNAME rpz-tcp-only. (answer over TCP only) is not a block; skipped",
                quote(trigger)
            )),
            // The first RPZ drafts wrote passthru as a CNAME to the owner itself.
            _ if self.absolute(&target).as_deref() == Some(&self.absolute_trigger(trigger))
                || target == trigger =>
            {
                Rule::Pass
            }
            // A redirect to a walled garden: the real name must not resolve, so block.
            _ => Rule::Block(None),
        }
    }
}

/// `Some(kind)` for triggers that are not query names.
fn other_trigger(trigger: &str) -> Option<&'static str> {
    match trigger.rsplit('.').next() {
        Some("rpz-ip") => Some("rpz-ip (response address)"),
        Some("rpz-nsip") => Some("rpz-nsip (name-server address)"),
        Some("rpz-nsdname") => Some("rpz-nsdname (name-server name)"),
        Some("rpz-client-ip") => Some("rpz-client-ip (client address)"),
        _ => None,
    }
}

fn is_ttl(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || b"smhdwSMHDW".contains(&b))
}

fn is_class(token: &str) -> bool {
    ["IN", "CH", "HS", "CS"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(token))
}

fn record(
    zone: &mut Zone,
    start: RecordStart,
    tokens: &[&str],
    out: &mut DomainEntries,
) -> Result<(), PolicyError> {
    let line = start.line;
    if !start.indented && tokens[0].starts_with('$') {
        return zone.directive(line, tokens, out);
    }
    let (owner_token, rest) = if start.indented {
        (None, tokens)
    } else {
        (Some(tokens[0]), &tokens[1..])
    };
    let mut k = 0;
    while k < rest.len().min(2) && (is_ttl(rest[k]) || is_class(rest[k])) {
        if is_class(rest[k]) && !rest[k].eq_ignore_ascii_case("IN") {
            return Err(out.error(
                line,
                format!(
                    "class {}; response policy zones are class IN",
                    quote(rest[k])
                ),
            ));
        }
        k += 1;
    }
    let Some(rtype) = rest.get(k) else {
        return Err(out.error(line, "record has no type".into()));
    };
    let rtype = rtype.to_ascii_uppercase();
    let rdata = &rest[k + 1..];
    if rtype == "SOA" {
        zone.soa(owner_token);
    }
    let owner = match owner_token {
        Some(t) => zone.owner(t).map_err(|m| out.error(line, m))?,
        None => zone
            .last_owner
            .clone()
            .ok_or_else(|| out.error(line, "indented record but no owner name before it".into()))?,
    };
    zone.last_owner = Some(owner.clone());
    if INFRASTRUCTURE.contains(&rtype.as_str()) {
        return Ok(());
    }
    let Owner::Trigger(trigger) = owner else {
        return Ok(()); // data at the apex describes the zone, it is not a trigger
    };
    if let Some(kind) = other_trigger(&trigger) {
        out.unsupported(line, || {
            format!(
                "{} is an {kind} trigger; only query-name triggers are enforced, skipped",
                quote(&trigger)
            )
        });
        return Ok(());
    }
    let rdata_first = |what: &str| {
        rdata
            .first()
            .copied()
            .ok_or_else(|| out.error(line, format!("{rtype} record without {what}")))
    };
    let rule = match rtype.as_str() {
        "CNAME" => zone.cname(rdata_first("a target")?, &trigger),
        "A" => {
            let text = rdata_first("an address")?;
            let addr: Ipv4Addr = text.parse().map_err(|_| {
                out.error(
                    line,
                    format!("{} is not an IPv4 address (A record)", quote(text)),
                )
            })?;
            Rule::Block(Some(IpAddr::V4(addr)))
        }
        "AAAA" => {
            let text = rdata_first("an address")?;
            let addr: Ipv6Addr = text.parse().map_err(|_| {
                out.error(
                    line,
                    format!("{} is not an IPv6 address (AAAA record)", quote(text)),
                )
            })?;
            Rule::Block(Some(IpAddr::V6(addr)))
        }
        _ => Rule::Block(None),
    };
    let (action, sinkhole) = match rule {
        Rule::Block(sinkhole) => (Action::Block, sinkhole),
        Rule::Pass => (Action::Pass, None),
        Rule::Unsupported(message) => {
            out.unsupported(line, || message);
            return Ok(());
        }
    };
    if trigger == "*" {
        return Err(out.error(
            line,
            "\"*\" at the zone apex would match every name; refusing the zone".into(),
        ));
    }
    let (name, scope) = match trigger.strip_prefix("*.") {
        Some(parent) => (parent, Scope::Below),
        None => (trigger.as_str(), Scope::Exact),
    };
    out.push(name, &trigger, line, scope, action, sinkhole)
}

// --- Lexer ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct RecordStart {
    line: u32,
    /// The record starts with a blank: it has no owner field.
    indented: bool,
}

struct Lexer<'a> {
    lines: std::iter::Enumerate<std::str::Split<'a, char>>,
}

impl<'a> Lexer<'a> {
    /// The tokens of the next record (a line, or lines joined by parentheses) into `tokens`.
    fn next_record(
        &mut self,
        tokens: &mut Vec<&'a str>,
    ) -> Result<Option<RecordStart>, (u32, String)> {
        tokens.clear();
        let mut depth = 0u32;
        let mut start: Option<RecordStart> = None;
        for (i, raw) in self.lines.by_ref() {
            let line = line_no(i);
            let before = tokens.len();
            tokenize(raw, line, tokens, &mut depth)?;
            if start.is_none() && (tokens.len() > before || depth > 0) {
                start = Some(RecordStart {
                    line,
                    indented: raw.starts_with([' ', '\t']),
                });
            }
            if depth == 0 && start.is_some() {
                return Ok(start);
            }
        }
        match start {
            Some(s) => Err((
                s.line,
                "'(' is not closed before the end of the file".into(),
            )),
            None => Ok(None),
        }
    }
}

/// Split one line into tokens; `;` ends it (outside quotes), parentheses only change `depth`.
/// Every token boundary is an ASCII delimiter or the end of the line, so slicing stays on char
/// boundaries.
fn tokenize<'a>(
    raw: &'a str,
    line: u32,
    tokens: &mut Vec<&'a str>,
    depth: &mut u32,
) -> Result<(), (u32, String)> {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b';' => break,
            b'(' => {
                *depth += 1;
                i += 1;
            }
            b')' => {
                *depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| (line, "')' without '('".to_string()))?;
                i += 1;
            }
            b'"' => {
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => return Err((line, "unterminated quoted string".into())),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                tokens.push(&raw[i..=j]);
                i = j + 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                let s = i;
                while i < b.len()
                    && !matches!(b[i], b' ' | b'\t' | b'\r' | b';' | b'(' | b')' | b'"')
                {
                    // An escaped character (`\.`, `\ `) belongs to the token.
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                tokens.push(&raw[s..i.min(b.len())]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use std::path::Path;

    use super::super::{DomainFormat, parse_domains};
    use super::*;

    fn parse(text: &str) -> Result<DomainEntries, String> {
        parse_domains(text, Path::new("z.rpz"), DomainFormat::Rpz, Scope::Subtree)
            .map_err(|e| e.to_string())
    }

    fn entries(e: &DomainEntries) -> Vec<(String, u32, Scope, Action)> {
        e.iter()
            .map(|d| (d.name.to_string(), d.line, d.scope, d.action))
            .collect()
    }

    #[test]
    fn tokens() {
        let mut t = Vec::new();
        let mut depth = 0;
        tokenize("a  IN TXT \"x ; y\" ; c", 1, &mut t, &mut depth).unwrap();
        assert_eq!(t, ["a", "IN", "TXT", "\"x ; y\""]);
        t.clear();
        tokenize("@ SOA ns. h. ( 1 2", 1, &mut t, &mut depth).unwrap();
        assert_eq!(depth, 1);
        assert_eq!(t, ["@", "SOA", "ns.", "h.", "1", "2"]);
        t.clear();
        tokenize("a\\ b é\\", 1, &mut t, &mut depth).unwrap();
        assert_eq!(t, ["a\\ b", "é\\"]);
    }

    #[test]
    fn origin_apex_and_actions() {
        let text = "$TTL 300\n$ORIGIN rpz.local.\n@ IN SOA ns.rpz.local. admin.rpz.local. (\n  1 ; serial\n  3600 600 86400 60 )\n\
                    @ NS ns.rpz.local.\nbad.example CNAME .\n*.bad.example 60 IN CNAME .\nnodata.example CNAME *.\n\
                    drop.example CNAME rpz-drop.\nok.bad.example CNAME rpz-passthru.\nsink.example A 192.0.2.66\n\
                    \tAAAA 2001:db8::66\nabs.example.rpz.local. CNAME .\nwalled.example CNAME garden.example.net.\n";
        let e = parse(text).unwrap();
        assert_eq!(
            entries(&e),
            [
                ("bad.example".to_string(), 7, Scope::Exact, Action::Block),
                ("bad.example".to_string(), 8, Scope::Below, Action::Block),
                ("nodata.example".to_string(), 9, Scope::Exact, Action::Block),
                ("drop.example".to_string(), 10, Scope::Exact, Action::Block),
                ("ok.bad.example".to_string(), 11, Scope::Exact, Action::Pass),
                ("sink.example".to_string(), 12, Scope::Exact, Action::Block),
                ("sink.example".to_string(), 13, Scope::Exact, Action::Block),
                ("abs.example".to_string(), 14, Scope::Exact, Action::Block),
                (
                    "walled.example".to_string(),
                    15,
                    Scope::Exact,
                    Action::Block
                ),
            ]
        );
        assert_eq!(
            e.get(5).unwrap().sinkhole,
            Some("192.0.2.66".parse().unwrap())
        );
        assert_eq!(
            e.get(6).unwrap().sinkhole,
            Some("2001:db8::66".parse().unwrap())
        );
        assert!(e.warnings.is_empty());
    }

    #[test]
    fn compilezone_style_origin_dot() {
        // named-compilezone writes "$ORIGIN ." and then the SOA with its full name.
        let text = "$ORIGIN .\n$TTL 60\nrpz.local IN SOA ns. h. 1 2 3 4 5\n$ORIGIN rpz.local.\n\
                    evil CNAME .\n$ORIGIN sub.rpz.local.\nx CNAME .\n";
        let e = parse(text).unwrap();
        let names: Vec<_> = e.iter().map(|d| d.name).collect();
        assert_eq!(names, ["evil", "x.sub"]);
    }

    #[test]
    fn no_origin_relative_names() {
        let e = parse("bad.example CNAME .\nold.example CNAME old.example\n").unwrap();
        assert_eq!(e.get(0).unwrap().action, Action::Block);
        assert_eq!(e.get(1).unwrap().action, Action::Pass);
    }

    #[test]
    fn unsupported_triggers_warn_and_count() {
        let mut text = String::from("$ORIGIN rpz.local.\n@ SOA ns. h. 1 2 3 4 5\n");
        for i in 0..7 {
            text.push_str(&format!("32.{i}.2.0.192.rpz-ip CNAME .\n"));
        }
        text.push_str("ns.evil.example.rpz-nsdname CNAME .\ntcp.example CNAME rpz-tcp-only.\n");
        let e = parse(&text).unwrap();
        assert!(e.is_empty());
        assert_eq!(e.unsupported, 9);
        assert_eq!(e.warnings.len(), 6);
        assert_eq!(
            e.warnings[0].to_string(),
            "z.rpz:3: entry: \"32.0.2.0.192.rpz-ip\" is an rpz-ip (response address) trigger; only query-name triggers are enforced, skipped"
        );
        assert_eq!(
            e.warnings[5].to_string(),
            "z.rpz:1: entry: 4 more records the data path cannot enforce were skipped"
        );
    }

    #[test]
    fn bad_zones() {
        assert_eq!(
            parse("$ORIGIN rpz.local.\nbad.example.other. CNAME .\n").unwrap_err(),
            "z.rpz:2: entry: \"bad.example.other.\" is outside the zone rpz.local."
        );
        assert_eq!(
            parse("$ORIGIN rpz.local.\n@ SOA ns. h. ( 1 2\n3 4 5\n").unwrap_err(),
            "z.rpz:2: syntax: '(' is not closed before the end of the file"
        );
        assert_eq!(
            parse("$ORIGIN rpz.local.\n\n* CNAME .\n").unwrap_err(),
            "z.rpz:3: entry: \"*\" at the zone apex would match every name; refusing the zone"
        );
        assert_eq!(
            parse("$INCLUDE other.zone\n").unwrap_err(),
            "z.rpz:1: syntax: $INCLUDE is not supported; give the zone as one file"
        );
        assert_eq!(
            parse("$ORIGIN rpz.local.\nx A 300.1.1.1\n").unwrap_err(),
            "z.rpz:2: entry: \"300.1.1.1\" is not an IPv4 address (A record)"
        );
        assert_eq!(
            parse("$ORIGIN rpz.local.\nb@d CNAME .\n").unwrap_err(),
            "z.rpz:2: entry: \"b@d\" contains '@'; a domain name holds letters, digits, '-' and '_'"
        );
        assert_eq!(
            parse("$ORIGIN rpz.local.\nx CH TXT \"a\"\n").unwrap_err(),
            "z.rpz:2: entry: class \"CH\"; response policy zones are class IN"
        );
        assert_eq!(
            parse(" CNAME .\n").unwrap_err(),
            "z.rpz:1: entry: indented record but no owner name before it"
        );
        assert_eq!(
            parse("x.example\n").unwrap_err(),
            "z.rpz:1: entry: record has no type"
        );
    }
}
