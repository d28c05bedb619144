//! Every record of the management API's audit log also goes to the SOC (R10): as a notice of kind
//! `audit` (syslog MSGID `audit`, structured data `gateway-audit@32473`) to the alert sinks of the
//! policy in force, i.e. its `[telemetry.syslog]` targets and the local alert log. The audit log
//! itself stays where it is, rotated as before.
//!
//! The forwarder runs inside the controller's calls, which may hold the engine; it only queues
//! (bounded, never waits) and [`serve`] delivers from its own task.
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use gateway_alerts::{Notice, Severity};
use gateway_api::{AuditRecord, Outcome};
use tokio::sync::mpsc;

/// Records waiting for the engine; beyond this they are dropped and counted (and stay in the
/// local audit log).
const QUEUE: usize = 1024;

/// The audit record as a notice.
pub fn audit_notice(host: &str, r: &AuditRecord) -> Notice {
    let result = match r.result {
        Outcome::Ok => "ok",
        Outcome::Denied => "denied",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
    };
    let severity = match r.result {
        Outcome::Ok | Outcome::Refused => Severity::Notice,
        Outcome::Denied => Severity::Warning,
        Outcome::Failed => Severity::Error,
    };
    let who = r.who.as_ref();
    let subject = who.map_or_else(|| "-".to_owned(), |w| w.subject.clone());
    let mut params = vec![
        ("subject", subject.clone()),
        ("cn", who.map_or_else(|| "-".to_owned(), |w| w.cn.clone())),
        ("serial", who.map_or_else(String::new, |w| w.serial.clone())),
        (
            "role",
            who.and_then(|w| w.role.clone())
                .unwrap_or_else(|| "-".to_owned()),
        ),
        ("from", r.from.clone()),
        ("action", r.action.clone()),
        ("result", result.to_owned()),
        ("status", r.status.to_string()),
        ("audit_time", r.time.clone()),
    ];
    if !r.target.is_null() {
        params.push(("target", r.target.to_string()));
    }
    if !r.message.is_empty() {
        params.push(("detail", r.message.clone()));
    }
    let by = who.map_or_else(|| "unauthenticated peer".to_owned(), |w| w.label());
    let mut message = format!("audit: {} by {by} from {}: {result}", r.action, r.from);
    if !r.message.is_empty() {
        message.push_str(&format!(" ({})", r.message));
    }
    Notice::new(host, "audit", severity, params, message)
}

/// A forwarder for [`gateway_api::AuditLog::with_forwarder`] and the queue it feeds.
pub fn forwarder() -> (
    impl Fn(&AuditRecord) + Send + Sync + 'static,
    mpsc::Receiver<AuditRecord>,
    Arc<AtomicU64>,
) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&dropped);
    let forward = move |r: &AuditRecord| {
        if tx.try_send(r.clone()).is_err() {
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                dropped = n,
                "audit record not forwarded to the SOC (queue full); it is in the local audit log"
            );
        }
    };
    (forward, rx, dropped)
}

/// Delivers queued audit records to the engine's alert sinks.
pub async fn serve(engine: crate::backend::SharedEngine, mut records: mpsc::Receiver<AuditRecord>) {
    while let Some(record) = records.recv().await {
        let engine = engine.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(e) = crate::backend::lock(&engine).as_ref() {
                e.audit_to_soc(&record);
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_names_subject_action_and_result() {
        let who = gateway_api::Who {
            cn: "alice".into(),
            serial: "3f:9a".into(),
            role: Some("admin".into()),
            subject: "CN=alice,OU=admin,O=Ward 7".into(),
        };
        let r = AuditRecord::now(Some(who), "10.10.0.9:50123", "policy.apply", Outcome::Ok)
            .target(serde_json::json!({"hash": "ab12"}))
            .status(200);
        let n = audit_notice("gw-7", &r);
        let syslog = n.to_rfc5424(gateway_alerts::Facility::Local0, 1);
        assert!(syslog.starts_with("<133>1 "), "{syslog}");
        assert!(syslog.contains(" gw-7 gatewayd 1 audit [gateway-audit@32473 subject=\"CN=alice,OU=admin,O=Ward 7\" cn=\"alice\" serial=\"3f:9a\" role=\"admin\" from=\"10.10.0.9:50123\" action=\"policy.apply\" result=\"ok\" status=\"200\""), "{syslog}");
        assert!(
            syslog.contains(" target=\"{\\\"hash\\\":\\\"ab12\\\"}\""),
            "{syslog}"
        );
        assert!(
            syslog
                .ends_with("\u{feff}audit: policy.apply by alice (3f:9a) from 10.10.0.9:50123: ok"),
            "{syslog}"
        );
        let denied = audit_notice(
            "gw-7",
            &AuditRecord::now(None, "192.0.2.1:1", "tls.handshake", Outcome::Denied),
        );
        assert_eq!(denied.severity, Severity::Warning);
        assert_eq!(
            denied.message,
            "audit: tls.handshake by unauthenticated peer from 192.0.2.1:1: denied"
        );
    }
}
