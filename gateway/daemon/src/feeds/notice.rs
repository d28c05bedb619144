//! The alerts of remote feeds: MSGID `feed`, structured data `gateway-feed@32473` with `feed`,
//! `url`, `event` (`failed`, `recovered`, `apply_failed`) and what the event needs (`reason`,
//! `error`, `kept_entries`, `failed_attempts`).
use gateway_alerts::{Notice, Severity};

use super::{EventKind, FeedEvent};

/// The alert for `event`; `None` for a new list that was applied (`apply_error` is the reason it
/// was not, if it was not).
pub fn notice(host: &str, event: &FeedEvent, apply_error: Option<&str>) -> Option<Notice> {
    let mut params = vec![("feed", event.feed.clone()), ("url", event.url.clone())];
    let (severity, message) = match &event.kind {
        EventKind::Updated { .. } => {
            let error = apply_error?;
            params.extend([
                ("event", "apply_failed".to_owned()),
                ("error", error.to_owned()),
            ]);
            (
                Severity::Error,
                format!(
                    "feed {}: the new list from {} was not applied: {error}; the policy in force is unchanged",
                    event.feed, event.url
                ),
            )
        }
        EventKind::Failed { error, kept } => {
            let kept_text = match kept {
                Some(n) => format!("the last good list ({n} entries) stays in force"),
                None => "no good list yet: this feed blocks nothing".to_owned(),
            };
            params.extend([
                ("event", "failed".to_owned()),
                ("reason", error.reason.as_str().to_owned()),
                ("error", error.detail.clone()),
                (
                    "kept_entries",
                    kept.map_or_else(|| "none".to_owned(), |n| n.to_string()),
                ),
            ]);
            (
                Severity::Error,
                format!(
                    "feed {}: download from {} failed ({}): {}; {kept_text}",
                    event.feed,
                    event.url,
                    error.reason.as_str(),
                    error.detail
                ),
            )
        }
        EventKind::Recovered { after } => {
            params.extend([
                ("event", "recovered".to_owned()),
                ("failed_attempts", after.to_string()),
            ]);
            (
                Severity::Notice,
                format!(
                    "feed {}: download from {} succeeded again after {after} failed attempts",
                    event.feed, event.url
                ),
            )
        }
    };
    Some(Notice::new(host, "feed", severity, params, message))
}

#[cfg(test)]
mod tests {
    use gateway_metrics::snapshot::FeedFailure;

    use super::*;
    use crate::feeds::http::FetchError;

    fn event(kind: EventKind) -> FeedEvent {
        FeedEvent {
            feed: "soc".into(),
            url: "https://x.example/l.txt".into(),
            kind,
        }
    }

    #[test]
    fn texts_and_parameters() {
        let failed = notice(
            "gw",
            &event(EventKind::Failed {
                error: FetchError::new(FeedFailure::Truncated, "body cut after 25 bytes"),
                kept: Some(3),
            }),
            None,
        )
        .expect("failed");
        assert_eq!(failed.severity, Severity::Error);
        assert_eq!(
            failed.message,
            "feed soc: download from https://x.example/l.txt failed (truncated): body cut after 25 bytes; the last good list (3 entries) stays in force"
        );
        assert!(failed.params.contains(&("reason", "truncated".to_owned())));
        assert!(failed.params.contains(&("kept_entries", "3".to_owned())));

        let none = notice(
            "gw",
            &event(EventKind::Failed {
                error: FetchError::new(FeedFailure::Dns, "x.example: no address"),
                kept: None,
            }),
            None,
        )
        .expect("failed");
        assert!(
            none.message
                .ends_with("no good list yet: this feed blocks nothing")
        );
        assert!(none.params.contains(&("kept_entries", "none".to_owned())));

        let back = notice("gw", &event(EventKind::Recovered { after: 4 }), None).expect("back");
        assert_eq!(back.severity, Severity::Notice);
        assert!(back.params.contains(&("event", "recovered".to_owned())));

        assert_eq!(
            notice("gw", &event(EventKind::Updated { entries: 3 }), None),
            None,
            "an applied list is no alert"
        );
        let refused = notice(
            "gw",
            &event(EventKind::Updated { entries: 3 }),
            Some("p.toml:1: capacity"),
        )
        .expect("refused");
        assert!(
            refused
                .params
                .contains(&("event", "apply_failed".to_owned()))
        );
    }
}
