//! Control-plane events for the SOC: a feed download failed or recovered (`feed`), an admin
//! acted on the box (`audit`). Unlike an [`crate::Alert`] they come from gatewayd itself, not
//! from a packet, so they carry a kind, a severity and named parameters.
//!
//! As syslog (RFC 5424): APP-NAME `gatewayd`, MSGID the kind (`feed`, `audit`), structured data
//! `[gateway-<kind>@32473 k="v" …]` and the sentence as MSG (with the BOM, as for alerts):
//!
//! ```text
//! <131>1 2026-11-23T07:00:00.000Z gw-ward-07 gatewayd 4711 feed [gateway-feed@32473
//!   feed="soc" url="https://…" event="failed" reason="http_status" error="HTTP 500"]
//!   BOMfeed soc: download from https://… failed (http_status): HTTP 500; last good list kept
//! ```
//! In the local JSON-lines log: `{"time":…,"host":…,"kind":"feed","severity":"error",
//! "message":…, "<param>":…}` (parameter names never collide with the fixed keys: see
//! [`Notice::new`]).
use std::fmt::Write as _;
use std::time::SystemTime;

use crate::rfc3339;
use crate::syslog::{
    APP_NAME, BOM, ENTERPRISE_NUMBER, Facility, Severity, escape_param_value, prival,
};

/// Keys of the JSON line that parameters may not take.
const RESERVED: [&str; 5] = ["time", "host", "kind", "severity", "message"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub time: SystemTime,
    pub host: String,
    /// `feed`, `audit`: the syslog MSGID. Printable ASCII, no spaces, at most 32 characters.
    pub kind: &'static str,
    pub severity: Severity,
    /// Named values, in order (SD-PARAMs and JSON keys).
    pub params: Vec<(&'static str, String)>,
    /// One human sentence.
    pub message: String,
}

impl Notice {
    /// A notice stamped now. A parameter named like a fixed JSON key gets a `_` suffix.
    pub fn new(
        host: &str,
        kind: &'static str,
        severity: Severity,
        params: Vec<(&'static str, String)>,
        message: String,
    ) -> Notice {
        debug_assert!(params.iter().all(|(k, _)| !RESERVED.contains(k)));
        Notice {
            time: SystemTime::now(),
            host: host.to_owned(),
            kind,
            severity,
            params,
            message,
        }
    }

    /// The notice as one JSON object (a JSON line without the newline).
    pub fn to_json(&self) -> String {
        let mut map = serde_json::Map::new();
        map.insert("time".into(), rfc3339::format(self.time).into());
        map.insert("host".into(), self.host.clone().into());
        map.insert("kind".into(), self.kind.into());
        map.insert("severity".into(), severity_word(self.severity).into());
        for (k, v) in &self.params {
            let key = if RESERVED.contains(k) {
                format!("{k}_")
            } else {
                (*k).to_owned()
            };
            map.insert(key, v.clone().into());
        }
        map.insert("message".into(), self.message.clone().into());
        serde_json::Value::Object(map).to_string()
    }

    /// The notice as an RFC 5424 message (without framing).
    pub fn to_rfc5424(&self, facility: Facility, procid: u32) -> String {
        let mut out = String::with_capacity(256);
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "<{}>1 {} {} {APP_NAME} {procid} {} [gateway-{}@{ENTERPRISE_NUMBER}",
            prival(facility, self.severity),
            rfc3339::format(self.time),
            header(&self.host),
            self.kind,
            self.kind,
        );
        for (k, v) in &self.params {
            let _ = write!(out, " {k}=\"{}\"", escape_param_value(v));
        }
        out.push_str("] ");
        out.push_str(BOM);
        out.push_str(&self.message);
        out
    }
}

/// HOSTNAME: printable US-ASCII (others `_`), at most 255, `-` when empty.
fn header(host: &str) -> String {
    if host.is_empty() {
        return "-".to_owned();
    }
    host.chars()
        .take(255)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

pub fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Emergency => "emergency",
        Severity::Alert => "alert",
        Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
        Severity::Informational => "info",
        Severity::Debug => "debug",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn sample() -> Notice {
        Notice {
            time: UNIX_EPOCH + Duration::from_millis(1_735_787_045_678),
            host: "gw 7".to_owned(),
            kind: "feed",
            severity: Severity::Error,
            params: vec![
                ("feed", "soc".to_owned()),
                ("error", "bad \"x\" ]".to_owned()),
                ("message", "clash".to_owned()),
            ],
            message: "feed soc failed".to_owned(),
        }
    }

    #[test]
    fn syslog_form() {
        assert_eq!(
            sample().to_rfc5424(Facility::Local0, 42),
            "<131>1 2025-01-02T03:04:05.678Z gw_7 gatewayd 42 feed [gateway-feed@32473 \
             feed=\"soc\" error=\"bad \\\"x\\\" \\]\" message=\"clash\"] \u{feff}feed soc failed"
        );
    }

    #[test]
    fn json_form_keeps_fixed_keys() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        assert_eq!(v["kind"], "feed");
        assert_eq!(v["severity"], "error");
        assert_eq!(v["message"], "feed soc failed");
        assert_eq!(v["message_"], "clash");
        assert_eq!(v["error"], "bad \"x\" ]");
        assert_eq!(v["time"], "2025-01-02T03:04:05.678Z");
    }
}
