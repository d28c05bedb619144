//! Plain domain lists: one name per line. `#`, `;` and `!` start a comment at the start of a line or
//! after a blank — not inside a token, so an adblock cosmetic rule (`example.com##.ad`) is refused
//! as garbage instead of being read as "block example.com". `*.name` and `.name` mean the name and
//! everything under it; adblock network rules `||name^` likewise, `@@||name^` is an exception.

use super::{Action, DomainEntries, Scope, line_no};
use crate::error::{PolicyError, quote};

/// The line without its comment: from the first `#`/`;`/`!` that starts the line or follows a blank.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let cut = bytes.iter().enumerate().position(|(i, &b)| {
        matches!(b, b'#' | b';' | b'!') && (i == 0 || bytes[i - 1].is_ascii_whitespace())
    });
    cut.map_or(line, |p| &line[..p])
}

/// The name of an adblock network rule body (after `||`): `name^`, optionally `name^|`.
fn adblock_name(body: &str) -> Result<&str, String> {
    if body.contains('$') {
        return Err("adblock options ($…) are not supported; list the name alone".into());
    }
    body.strip_suffix("^|")
        .or_else(|| body.strip_suffix('^'))
        .ok_or_else(|| "an adblock rule here must be \"||name^\"".into())
}

pub(super) fn parse(text: &str, bare: Scope, out: &mut DomainEntries) -> Result<(), PolicyError> {
    for (i, raw_line) in text.split('\n').enumerate() {
        let line = line_no(i);
        let trimmed = raw_line.trim();
        // Adblock list header, e.g. "[Adblock Plus 2.0]".
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            continue;
        }
        let token = strip_comment(trimmed).trim_end();
        if token.is_empty() {
            continue;
        }
        if let Some((first, _)) = token.split_once(|c: char| c.is_ascii_whitespace()) {
            let hint = if first.parse::<std::net::IpAddr>().is_ok() {
                "; this looks like a hosts-file line (format \"hosts\")"
            } else {
                ""
            };
            return Err(out.error(
                line,
                format!(
                    "{} holds more than one item; expected one name per line{hint}",
                    quote(token)
                ),
            ));
        }
        let (name, scope, action) = if let Some(body) = token.strip_prefix("@@||") {
            let name =
                adblock_name(body).map_err(|m| out.error(line, format!("{} {m}", quote(token))))?;
            (name, Scope::Subtree, Action::Pass)
        } else if let Some(body) = token.strip_prefix("||") {
            let name =
                adblock_name(body).map_err(|m| out.error(line, format!("{} {m}", quote(token))))?;
            (name, Scope::Subtree, Action::Block)
        } else if let Some(rest) = token.strip_prefix("*.") {
            (rest, Scope::Subtree, Action::Block)
        } else if let Some(rest) = token.strip_prefix('.') {
            (rest, Scope::Subtree, Action::Block)
        } else {
            (token, bare, Action::Block)
        };
        out.push(name, token, line, scope, action, None)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: test code
mod tests {
    use std::path::Path;

    use super::super::{DomainFormat, parse_domains};
    use super::*;

    fn parse(text: &str, bare: Scope) -> Result<DomainEntries, String> {
        parse_domains(text, Path::new("l.txt"), DomainFormat::List, bare).map_err(|e| e.to_string())
    }

    #[test]
    fn comments_markers_and_bare_scope() {
        let text = "[Adblock Plus 2.0]\n! Title: x\n# hash\n; semi\r\nA.example\r\n*.b.example # why\n\
                    .c.example\n||d.example^\n@@||e.example^|\nf.example.\n";
        let e = parse(text, Scope::Exact).unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|d| (d.name, d.line, d.scope, d.action))
            .collect();
        assert_eq!(
            got,
            [
                ("a.example", 5, Scope::Exact, Action::Block),
                ("b.example", 6, Scope::Subtree, Action::Block),
                ("c.example", 7, Scope::Subtree, Action::Block),
                ("d.example", 8, Scope::Subtree, Action::Block),
                ("e.example", 9, Scope::Subtree, Action::Pass),
                ("f.example", 10, Scope::Exact, Action::Block),
            ]
        );
    }

    #[test]
    fn a_top_level_domain_is_kept_with_a_warning() {
        let e = parse("zip\n*.mov\nexact.example\n", Scope::Subtree).unwrap();
        assert_eq!(e.len(), 3);
        let w: Vec<String> = e.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            w,
            [
                "l.txt:1: entry: \"zip\" blocks every name under the top-level domain .zip",
                "l.txt:2: entry: \"*.mov\" blocks every name under the top-level domain .mov",
            ]
        );
        let exact = parse("zip\n", Scope::Exact).unwrap();
        assert!(
            exact.warnings.is_empty(),
            "an exact TLD entry blocks one name"
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            parse("ok.example\n0.0.0.0 x.example\n", Scope::Subtree).unwrap_err(),
            "l.txt:2: entry: \"0.0.0.0 x.example\" holds more than one item; expected one name per line; this looks like a hosts-file line (format \"hosts\")"
        );
        assert_eq!(
            parse("example.com##.ad\n", Scope::Subtree).unwrap_err(),
            "l.txt:1: entry: \"example.com##.ad\" contains '#'; a domain name holds letters, digits, '-' and '_'"
        );
        assert_eq!(
            parse("\n||x.example^$third-party\n", Scope::Subtree).unwrap_err(),
            "l.txt:2: entry: \"||x.example^$third-party\" adblock options ($…) are not supported; list the name alone"
        );
        assert_eq!(
            parse("||x.example\n", Scope::Subtree).unwrap_err(),
            "l.txt:1: entry: \"||x.example\" an adblock rule here must be \"||name^\""
        );
        assert_eq!(
            parse("*.\n", Scope::Subtree).unwrap_err(),
            "l.txt:1: entry: \"*.\" is empty"
        );
    }
}
