//! RFC 5424 syslog messages and RFC 6587 octet-counting frames (also the framing of RFC 5425, syslog
//! over TLS).
//!
//! ```text
//! <132>1 2025-01-02T03:04:05.678Z gw-ward-07 gatewayd 4711 blocklist [gateway@32473 reason="blocklist"
//!   role="lan" ingress="lan0" family="4" src="10.10.0.2" dst="203.0.113.66" proto="6" sport="51234"
//!   dport="443" bytes="74" tcp_flags="2" rule="feed:soc-indicators" community_id="1:…" suppressed="0"
//!   policy="ward-office" generation="3"] BOMblocked 10.10.0.2:51234 → 203.0.113.66:443/tcp on lan0: …
//! ```
//! (one line; wrapped here.)
//!
//! - PRI: facility from the configuration (default `local0`) × 8 + severity by reason, see
//!   [`severity`].
//! - TIMESTAMP: UTC with milliseconds. HOSTNAME: [`Alert::host`], printable US-ASCII only (others
//!   become `_`), `-` when empty. APP-NAME `gatewayd`, PROCID the daemon's pid, MSGID the reason
//!   word.
//! - STRUCTURED-DATA: one element `gateway@32473` ([`SD_ID`]; 32473 is the private enterprise
//!   number IANA reserves for documentation, RFC 5612) holding every alert field under the same
//!   name as in the JSON lines; absent optional fields are left out. Values escape `"`, `\` and `]`
//!   with a backslash (RFC 5424 §6.3.3).
//! - MSG: the alert's sentence as UTF-8 **with the BOM**. RFC 5424 §6.4 requires the BOM for a
//!   Unicode MSG and the sentence holds `→` (and port, rule or policy names may hold any
//!   character), so a receiver that honours the RFC knows the encoding; rsyslog keeps the BOM in
//!   `%msg%`. Machines should read the structured data, not the sentence.
use std::fmt::Write as _;

use gateway_common::Reason;

use crate::{Alert, rfc3339};

/// Private enterprise number of the structured-data element: 32473, reserved for documentation
/// (RFC 5612). Replace with the vendor's own PEN when it has one.
pub const ENTERPRISE_NUMBER: u32 = 32473;
/// The SD-ID of the alert element: `gateway@` + [`ENTERPRISE_NUMBER`].
pub const SD_ID: &str = "gateway@32473";
/// APP-NAME of every message.
pub const APP_NAME: &str = "gatewayd";
/// UTF-8 byte order mark that starts a Unicode MSG (RFC 5424 §6.4).
pub const BOM: &str = "\u{feff}";

/// Syslog facilities (RFC 5424 §6.2.1 table 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Facility {
    Kern = 0,
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Syslog = 5,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Cron = 9,
    Authpriv = 10,
    Ftp = 11,
    Ntp = 12,
    Security = 13,
    Console = 14,
    SolarisCron = 15,
    #[default]
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

impl Facility {
    pub const ALL: [Facility; 24] = [
        Facility::Kern,
        Facility::User,
        Facility::Mail,
        Facility::Daemon,
        Facility::Auth,
        Facility::Syslog,
        Facility::Lpr,
        Facility::News,
        Facility::Uucp,
        Facility::Cron,
        Facility::Authpriv,
        Facility::Ftp,
        Facility::Ntp,
        Facility::Security,
        Facility::Console,
        Facility::SolarisCron,
        Facility::Local0,
        Facility::Local1,
        Facility::Local2,
        Facility::Local3,
        Facility::Local4,
        Facility::Local5,
        Facility::Local6,
        Facility::Local7,
    ];

    /// The name used in configuration files (as in rsyslog and syslog(3)).
    pub const fn as_str(self) -> &'static str {
        match self {
            Facility::Kern => "kern",
            Facility::User => "user",
            Facility::Mail => "mail",
            Facility::Daemon => "daemon",
            Facility::Auth => "auth",
            Facility::Syslog => "syslog",
            Facility::Lpr => "lpr",
            Facility::News => "news",
            Facility::Uucp => "uucp",
            Facility::Cron => "cron",
            Facility::Authpriv => "authpriv",
            Facility::Ftp => "ftp",
            Facility::Ntp => "ntp",
            Facility::Security => "security",
            Facility::Console => "console",
            Facility::SolarisCron => "solaris-cron",
            Facility::Local0 => "local0",
            Facility::Local1 => "local1",
            Facility::Local2 => "local2",
            Facility::Local3 => "local3",
            Facility::Local4 => "local4",
            Facility::Local5 => "local5",
            Facility::Local6 => "local6",
            Facility::Local7 => "local7",
        }
    }

    /// The facility named `name` (see [`Facility::as_str`]).
    pub fn from_name(name: &str) -> Option<Facility> {
        Facility::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// Syslog severities (RFC 5424 §6.2.1 table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Informational = 6,
    Debug = 7,
}

/// Severity of an alert by its reason:
///
/// | severity | reasons | why |
/// |---|---|---|
/// | warning | `blocklist`, `domain`, `isolated`, `shared_via_internet`, `cross_network`, `spoofed` | a host tried something the policy exists to stop (contact with a known-malicious address, an isolated host or a shared system reaching out over the Internet, traffic crossing between the dedicated network and the Internet, forged sources): the SOC looks at each one |
/// | notice | `not_allowed`, `dedicated_foreign`, `blocklist_in`, `malformed`, `fragment`, `no_policy`, `unknown_port` | refused as designed, mostly noise or misconfiguration (Internet scanners, a host using a port it was not granted) |
/// | informational | `pass`, `non_ip` | not a drop; only if the daemon ever reports one |
pub const fn severity(reason: Reason) -> Severity {
    match reason {
        Reason::Blocklist
        | Reason::Domain
        | Reason::Isolated
        | Reason::SharedViaInternet
        | Reason::CrossNetwork
        | Reason::Spoofed => Severity::Warning,
        Reason::NotAllowed
        | Reason::DedicatedForeign
        | Reason::BlocklistIn
        | Reason::Malformed
        | Reason::Fragment
        | Reason::NoPolicy
        | Reason::UnknownPort => Severity::Notice,
        Reason::Pass | Reason::NonIp => Severity::Informational,
    }
}

/// PRIVAL = facility × 8 + severity.
pub const fn prival(facility: Facility, severity: Severity) -> u8 {
    (facility as u8) * 8 + severity as u8
}

/// `value` with `"`, `\` and `]` escaped by a backslash, the three characters RFC 5424 §6.3.3
/// requires to be escaped inside a PARAM-VALUE.
pub fn escape_param_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field (HOSTNAME, …): 1..=`max` printable US-ASCII characters; anything else becomes
/// `_` so one odd hostname cannot break the header, and an empty value is the NILVALUE `-`.
fn header_field(value: &str, max: usize) -> String {
    if value.is_empty() {
        return "-".to_owned();
    }
    value
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// The alert as an RFC 5424 message (without framing). `procid` is the daemon's pid.
pub fn format_rfc5424(alert: &Alert, facility: Facility, procid: u32) -> String {
    let mut out = String::with_capacity(512);
    // Writing into a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        out,
        "<{}>1 {} {} {APP_NAME} {procid} {} ",
        prival(facility, severity(alert.reason)),
        rfc3339::format(alert.time),
        header_field(&alert.host, 255),
        alert.reason.as_str(),
    );
    out.push('[');
    out.push_str(SD_ID);
    let mut param = |name: &str, value: &str| {
        let _ = write!(out, " {name}=\"{}\"", escape_param_value(value));
    };
    param("reason", alert.reason.as_str());
    param("role", alert.role.as_str());
    param("ingress", &alert.ingress);
    if let Some(egress) = &alert.egress {
        param("egress", egress);
    }
    param("family", &alert.family.to_string());
    if let Some(src) = alert.src {
        param("src", &src.to_string());
    }
    if let Some(dst) = alert.dst {
        param("dst", &dst.to_string());
    }
    param("proto", &alert.proto.to_string());
    param("sport", &alert.sport.to_string());
    param("dport", &alert.dport.to_string());
    param("bytes", &alert.bytes.to_string());
    param("tcp_flags", &alert.tcp_flags.to_string());
    param("rule", &alert.rule);
    if let Some(id) = &alert.community_id {
        param("community_id", id);
    }
    param("suppressed", &alert.suppressed.to_string());
    param("policy", &alert.policy);
    param("generation", &alert.generation.to_string());
    if let Some(domain) = &alert.domain {
        param("domain", domain);
    }
    if let Some(matched) = &alert.domain_match {
        param("domain_match", matched);
    }
    if let Some(via) = &alert.domain_via {
        param("domain_via", via);
    }
    out.push_str("] ");
    out.push_str(BOM);
    out.push_str(&alert.sentence());
    out
}

/// RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes. Unlike a
/// newline trailer it survives newlines inside the message.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::tests::sample;

    /// The pieces of a message, checked against the RFC 5424 §6 ABNF while parsing.
    #[derive(Debug)]
    struct Parsed {
        pri: u8,
        timestamp: String,
        hostname: String,
        app_name: String,
        procid: String,
        msgid: String,
        sd_id: String,
        params: BTreeMap<String, String>,
        msg: String,
    }

    fn take<'a>(rest: &mut &'a str, field: &str, max: usize) -> &'a str {
        let end = rest
            .find(' ')
            .unwrap_or_else(|| panic!("{field}: no SP after it"));
        let value = &rest[..end];
        assert!(
            (1..=max).contains(&value.len()),
            "{field}: {value:?} must be 1..={max} characters"
        );
        assert!(
            value.chars().all(|c| c.is_ascii_graphic()),
            "{field}: {value:?} must be PRINTUSASCII"
        );
        *rest = &rest[end + 1..];
        value
    }

    /// SD-NAME = 1*32 PRINTUSASCII except '=', SP, ']', '"'.
    fn sd_name<'a>(rest: &mut &'a str, what: &str) -> &'a str {
        let end = rest
            .find(|c: char| !c.is_ascii_graphic() || matches!(c, '=' | ']' | '"'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        assert!((1..=32).contains(&name.len()), "{what}: {name:?}");
        *rest = &rest[end..];
        name
    }

    fn parse(text: &str) -> Parsed {
        let mut rest = text;
        // PRI = "<" PRIVAL ">", PRIVAL = 1*3DIGIT (0..191); VERSION = "1" (NONZERO-DIGIT 0*2DIGIT).
        assert!(rest.starts_with('<'), "PRI");
        let close = rest.find('>').expect("PRI end");
        let digits = &rest[1..close];
        assert!((1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
        let pri: u8 = digits.parse().expect("PRIVAL");
        assert!(pri <= 191);
        rest = &rest[close + 1..];
        assert!(rest.starts_with("1 "), "VERSION 1 then SP");
        rest = &rest[2..];
        let timestamp = take(&mut rest, "TIMESTAMP", 32).to_owned();
        let hostname = take(&mut rest, "HOSTNAME", 255).to_owned();
        let app_name = take(&mut rest, "APP-NAME", 48).to_owned();
        let procid = take(&mut rest, "PROCID", 128).to_owned();
        let msgid = take(&mut rest, "MSGID", 32).to_owned();
        // STRUCTURED-DATA: exactly one SD-ELEMENT here.
        assert!(rest.starts_with('['), "SD-ELEMENT");
        rest = &rest[1..];
        let sd_id = sd_name(&mut rest, "SD-ID").to_owned();
        let mut params = BTreeMap::new();
        loop {
            if let Some(r) = rest.strip_prefix(']') {
                rest = r;
                break;
            }
            rest = rest.strip_prefix(' ').expect("SP before SD-PARAM");
            let name = sd_name(&mut rest, "PARAM-NAME").to_owned();
            rest = rest.strip_prefix("=\"").expect("=\" after PARAM-NAME");
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("unterminated PARAM-VALUE") {
                    (_, '\\') => {
                        let (_, c) = chars.next().expect("escape at end");
                        // Only these three are escapes; a lone backslash stays a backslash.
                        if !matches!(c, '"' | '\\' | ']') {
                            value.push('\\');
                        }
                        value.push(c);
                    }
                    (i, '"') => break i,
                    (_, ']') => panic!("unescaped ] in PARAM-VALUE of {name}"),
                    (_, c) => value.push(c),
                }
            };
            rest = &rest[end + 1..];
            assert!(params.insert(name.clone(), value).is_none(), "{name} twice");
        }
        // MSG after SP; with the BOM it is MSG-UTF8.
        rest = rest.strip_prefix(' ').expect("SP before MSG");
        let msg = rest.strip_prefix(BOM).expect("BOM").to_owned();
        Parsed {
            pri,
            timestamp,
            hostname,
            app_name,
            procid,
            msgid,
            sd_id,
            params,
            msg,
        }
    }

    #[test]
    fn message_matches_the_abnf_and_carries_every_field() {
        let alert = sample();
        let text = format_rfc5424(&alert, Facility::Local0, 4711);
        let p = parse(&text);
        // local0 (16) × 8 + warning (4).
        assert_eq!(p.pri, 132);
        assert_eq!(p.timestamp, "2025-01-02T03:04:05.678Z");
        assert_eq!(p.hostname, "gw-ward-07");
        assert_eq!(p.app_name, "gatewayd");
        assert_eq!(p.procid, "4711");
        assert_eq!(p.msgid, "blocklist");
        assert_eq!(p.sd_id, SD_ID);
        assert_eq!(SD_ID, format!("gateway@{ENTERPRISE_NUMBER}"));
        let expected: BTreeMap<String, String> = [
            ("reason", "blocklist"),
            ("role", "lan"),
            ("ingress", "lan0"),
            ("family", "4"),
            ("src", "10.10.0.2"),
            ("dst", "203.0.113.66"),
            ("proto", "6"),
            ("sport", "51234"),
            ("dport", "443"),
            ("bytes", "74"),
            ("tcp_flags", "2"),
            ("rule", "feed:soc-indicators"),
            ("community_id", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
            ("suppressed", "0"),
            ("policy", "ward-office"),
            ("generation", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(p.params, expected);
        assert_eq!(p.msg, alert.sentence());
    }

    #[test]
    fn param_values_escape_quote_backslash_and_bracket() {
        assert_eq!(escape_param_value(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
        assert_eq!(escape_param_value("plain é →"), "plain é →");
        let mut alert = sample();
        alert.rule = r#"feed:"evil"\list]"#.to_owned();
        alert.policy = "]]\\\"".to_owned();
        alert.egress = Some("ded 0 é".to_owned());
        alert.domain = Some("x.example".to_owned());
        let p = parse(&format_rfc5424(&alert, Facility::Local0, 1));
        assert_eq!(p.params["rule"], alert.rule);
        assert_eq!(p.params["policy"], alert.policy);
        assert_eq!(p.params["egress"], "ded 0 é");
        assert_eq!(p.params["domain"], "x.example");
    }

    #[test]
    fn header_fields_stay_printable() {
        let mut alert = sample();
        alert.host = "gw ward\t07é".to_owned();
        let p = parse(&format_rfc5424(&alert, Facility::Local0, 1));
        assert_eq!(p.hostname, "gw_ward_07_");
        alert.host = String::new();
        assert_eq!(
            parse(&format_rfc5424(&alert, Facility::Local0, 1)).hostname,
            "-"
        );
        alert.host = "h".repeat(300);
        assert_eq!(
            parse(&format_rfc5424(&alert, Facility::Local0, 1))
                .hostname
                .len(),
            255
        );
    }

    #[test]
    fn pri_by_facility_and_reason() {
        let mut alert = sample();
        for reason in Reason::ALL {
            alert.reason = reason;
            for facility in Facility::ALL {
                let p = parse(&format_rfc5424(&alert, facility, 1));
                assert_eq!(p.pri, facility as u8 * 8 + severity(reason) as u8);
                assert_eq!(p.msgid, reason.as_str());
            }
        }
        assert_eq!(prival(Facility::Local7, Severity::Debug), 191);
        assert_eq!(prival(Facility::Kern, Severity::Emergency), 0);
        assert_eq!(severity(Reason::Spoofed), Severity::Warning);
        assert_eq!(severity(Reason::BlocklistIn), Severity::Notice);
        assert_eq!(Facility::default(), Facility::Local0);
        for f in Facility::ALL {
            assert_eq!(Facility::from_name(f.as_str()), Some(f));
        }
        assert_eq!(Facility::from_name("local8"), None);
    }

    #[test]
    fn octet_counting_counts_bytes_not_characters() {
        assert_eq!(frame(b"abc"), b"3 abc");
        let msg = format_rfc5424(&sample(), Facility::Local0, 1);
        let framed = frame(msg.as_bytes());
        let text = std::str::from_utf8(&framed).expect("utf8");
        let (len, rest) = text.split_once(' ').expect("SP");
        assert_eq!(len.parse::<usize>().expect("MSG-LEN"), rest.len());
        // The sentence's arrow and the BOM are multi-byte: bytes ≠ characters.
        assert!(rest.len() > rest.chars().count());
        assert!(!len.starts_with('0'));
        // Newlines inside do not matter to the framing.
        assert_eq!(frame(b"a\nb"), b"3 a\nb");
    }
}
