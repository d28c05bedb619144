//! Hosts files (`/etc/hosts` syntax, as URLhaus, StevenBlack and the Block List Project publish
//! blocklists): `address name [name …]`, `#` starts a comment anywhere on a line.

use std::net::IpAddr;

use super::{Action, DomainEntries, Scope, explicit_subtree, line_no};
use crate::error::{PolicyError, quote};

/// Names a hosts file gives the machine itself; blocklists ship them in their header
/// (`127.0.0.1 localhost`, `255.255.255.255 broadcasthost`, `0.0.0.0 0.0.0.0`). Never blocked.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

fn is_local_name(token: &str) -> bool {
    let token = token.strip_suffix('.').unwrap_or(token);
    LOCAL_NAMES.iter().any(|n| n.eq_ignore_ascii_case(token))
}

/// An address as hosts files write it; a scope id (`fe80::1%lo0`) is not part of the address.
fn parse_addr(token: &str) -> Option<IpAddr> {
    let addr = token.split_once('%').map_or(token, |(a, _)| a);
    addr.parse().ok()
}

pub(super) fn parse(text: &str, bare: Scope, out: &mut DomainEntries) -> Result<(), PolicyError> {
    for (i, raw_line) in text.split('\n').enumerate() {
        let line = line_no(i);
        let content = raw_line.find('#').map_or(raw_line, |p| &raw_line[..p]);
        let mut tokens = content.split_ascii_whitespace();
        let Some(addr_token) = tokens.next() else {
            continue;
        };
        let Some(addr) = parse_addr(addr_token) else {
            return Err(out.error(
                line,
                format!(
                    "{} is not an IP address; a hosts line is \"address name …\" (a list of names is format \"list\")",
                    quote(addr_token)
                ),
            ));
        };
        // 0.0.0.0, 127.0.0.1, :: and ::1 are how hosts files say "nowhere"; anything else is a
        // redirection the admin may want to see in the summary.
        let sinkhole = (!(addr.is_unspecified() || addr.is_loopback())).then_some(addr);
        let mut names = 0;
        for token in tokens {
            names += 1;
            if is_local_name(token) {
                out.ignored_local += 1;
                continue;
            }
            let (name, scope) = explicit_subtree(token, bare);
            out.push(name, token, line, scope, Action::Block, sinkhole)?;
        }
        if names == 0 {
            return Err(out.error(
                line,
                format!("{} has no name after the address", quote(raw_line.trim())),
            ));
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
        parse_domains(
            text,
            Path::new("h.txt"),
            DomainFormat::Hosts,
            Scope::Subtree,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn header_names_are_ignored_and_counted() {
        let text = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n\
                    fe80::1%lo0 localhost\n255.255.255.255\tbroadcasthost\n0.0.0.0 0.0.0.0\n\
                    0.0.0.0 Bad.Example # c2\n";
        let e = parse(text).unwrap();
        assert_eq!(e.ignored_local, 7);
        assert_eq!(e.len(), 1);
        let only = e.get(0).unwrap();
        assert_eq!(
            (only.name, only.line, only.scope),
            ("bad.example", 6, Scope::Subtree)
        );
        assert_eq!(only.sinkhole, None);
    }

    #[test]
    fn several_names_and_a_real_address() {
        let e = parse("192.0.2.1 a.example b.example\n:: c.example\n").unwrap();
        let got: Vec<_> = e.iter().map(|d| (d.name, d.line, d.sinkhole)).collect();
        let sink: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            got,
            [
                ("a.example", 1, Some(sink)),
                ("b.example", 1, Some(sink)),
                ("c.example", 2, None)
            ]
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            parse("0.0.0.0 ok.example\nbad.example\n").unwrap_err(),
            "h.txt:2: entry: \"bad.example\" is not an IP address; a hosts line is \"address name …\" (a list of names is format \"list\")"
        );
        assert_eq!(
            parse("\n\n0.0.0.0   # nothing\n").unwrap_err(),
            "h.txt:3: entry: \"0.0.0.0   # nothing\" has no name after the address"
        );
        assert_eq!(
            parse("0.0.0.0 good.example\n0.0.0.0 http://bad.example/x\n").unwrap_err(),
            "h.txt:2: entry: \"http://bad.example/x\" contains ':'; a domain name holds letters, digits, '-' and '_'"
        );
    }
}
