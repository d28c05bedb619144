//! How gatewayctl prints responses for people (`--json` prints them as they came).
use std::fmt::Write as _;

use gateway_api::{Pending, Who};

use crate::{
    control::{ApplyResult, StatsReport, StatusReport},
    remote::Answer,
};

pub fn applied(r: &ApplyResult) -> String {
    let mut s = String::new();
    if r.unchanged {
        let _ = writeln!(
            s,
            "policy unchanged (image {}), generation {} stays in force",
            short(&r.image_hash),
            r.generation
        );
    } else {
        let _ = writeln!(
            s,
            "applied generation {} (image {}) into slot {}: {} entries, {} written, {} deleted{} — compile {:.1} ms, apply {:.1} ms",
            r.generation,
            short(&r.image_hash),
            r.slot,
            r.entries,
            r.written,
            r.deleted,
            if r.purged > 0 {
                format!(", {} purged", r.purged)
            } else {
                String::new()
            },
            r.compile_ms,
            r.apply_ms,
        );
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if !r.diff.trim().is_empty() {
        let _ = writeln!(s, "{}", r.diff.trim_end());
    }
    s
}

pub fn status(r: &StatusReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "policy      {}", r.policy);
    let _ = writeln!(s, "profile     {}", r.profile);
    let _ = writeln!(s, "generation  {} (slot {})", r.generation, r.slot);
    let _ = writeln!(s, "image hash  {}", r.image_hash);
    let _ = writeln!(
        s,
        "entries     {} (last apply {:.1} ms)",
        r.entries, r.last_apply_ms
    );
    let _ = writeln!(
        s,
        "daemon      pid {}{}",
        r.pid,
        if r.adopted {
            ", adopted pinned state"
        } else {
            ""
        }
    );
    match &r.nftables {
        Some(n) => {
            let _ = writeln!(
                s,
                "nftables    {} (ruleset {} of this daemon, with policy generation {})",
                n.hash, n.generation, n.policy_generation
            );
        }
        None => {
            let _ = writeln!(s, "nftables    not managed by gatewayd (--nftables off)");
        }
    }
    let _ = writeln!(
        s,
        "packets     {} passed, {} dropped",
        r.passed_packets, r.dropped_packets
    );
    let _ = writeln!(
        s,
        "\nPORT      IFACE      IFINDEX  ROLE       XDP MODE  LINK"
    );
    for p in &r.ports {
        let _ = writeln!(
            s,
            "{:<9} {:<10} {:<8} {:<10} {:<9} {}",
            p.name,
            p.ifname,
            p.ifindex,
            p.role,
            p.mode,
            if p.adopted { "adopted" } else { "new" }
        );
    }
    s.push('\n');
    s.push_str(&feeds(&r.feeds));
    s
}

/// The feed table of `status`: entries in force, age of the list, where it comes from and, for a
/// remote feed whose last download failed, why.
fn feeds(feeds: &[crate::control::FeedStatus]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "FEED                          ENTRIES  AGE       SOURCE / LAST ERROR"
    );
    for f in feeds {
        let age = f.age_secs.map_or_else(|| "-".to_owned(), age);
        let _ = writeln!(
            s,
            "{:<29} {:>7}  {:<9} {}",
            f.name, f.entries, age, f.source
        );
        if let Some(e) = &f.last_error {
            let _ = writeln!(s, "{:<48} last error: {e}", "");
        }
    }
    s
}

/// Non-zero counters, or all with `all`.
pub fn stats(r: &StatsReport, all: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:<20} {:<7} {:>12} {:>14}",
        "ROLE", "REASON", "VERDICT", "PACKETS", "BYTES"
    );
    for c in r.counters.iter().filter(|c| all || c.packets > 0) {
        let _ = writeln!(
            s,
            "{:<10} {:<20} {:<7} {:>12} {:>14}",
            c.role, c.reason, c.verdict, c.packets, c.bytes
        );
    }
    s
}

/// `42s`, `17m`, `5h`, `3d`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `gatewayctl domains learnt`: live learnt addresses, then the counters.
pub fn learnt(r: &crate::control::LearntReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} learnt addresses (capacity {} per family)",
        r.entries.len(),
        r.capacity
    );
    if !r.entries.is_empty() {
        let _ = writeln!(
            s,
            "{:<40} {:>8} {:<18} {:<8} {:<9} FEED",
            "ADDRESS", "EXPIRES", "NAME HASH", "MATCH", "BLOCKING"
        );
    }
    for e in &r.entries {
        let _ = writeln!(
            s,
            "{:<40} {:>7}s {:<18} {:<8} {:<9} {}",
            e.address,
            e.expires_in_secs,
            e.name_hash,
            if e.subtree { "subtree" } else { "name" },
            if e.blocking { "yes" } else { "no" },
            e.feed.as_deref().unwrap_or("-")
        );
    }
    for (event, n) in &r.counters {
        let _ = writeln!(s, "{event:<16} {n}");
    }
    s
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// What a remote operation answered, for people.
pub fn remote(answer: &Answer, all: bool) -> String {
    let mut s = String::new();
    match answer {
        Answer::Status(r) => {
            match &r.current {
                Some(e) => {
                    let _ = writeln!(
                        s,
                        "in force    generation {} — bundle {} ({}), {} by {} at {}, {}",
                        e.generation,
                        e.hash,
                        e.policy,
                        word(&e.cause),
                        e.by,
                        e.applied_at,
                        word(&e.state)
                    );
                }
                None => {
                    let _ = writeln!(s, "in force    (no generation in the history)");
                }
            }
            pending(&mut s, r.pending.as_ref());
            if r.signed_bundles_required {
                let _ = writeln!(s, "signing     only signed bundles are applied");
            }
            match serde_json::from_value::<StatusReport>(r.backend.clone()) {
                Ok(b) => {
                    s.push('\n');
                    s.push_str(&status(&b));
                }
                Err(_) => {
                    let _ = writeln!(s, "data path   {}", r.backend);
                }
            }
        }
        Answer::Counters(v) => match serde_json::from_value::<StatsReport>(v.clone()) {
            Ok(r) => s.push_str(&stats(&r, all)),
            Err(_) => {
                let _ = writeln!(s, "{v}");
            }
        },
        Answer::History(h) => {
            let _ = writeln!(
                s,
                "{:>4}  {:<16}  {:<24}  {:<24}  {:<8}  {:<9}  BY",
                "GEN", "BUNDLE", "POLICY", "APPLIED", "CAUSE", "STATE"
            );
            for e in &h.entries {
                let cause = match e.from_generation {
                    Some(g) => format!("{} {g}", word(&e.cause)),
                    None => word(&e.cause),
                };
                let _ = writeln!(
                    s,
                    "{:>4}{} {:<16}  {:<24}  {:<24}  {:<8}  {:<9}  {}",
                    e.generation,
                    if h.current == Some(e.generation) {
                        "*"
                    } else {
                        " "
                    },
                    short(&e.hash.to_hex()),
                    e.policy,
                    e.applied_at,
                    cause,
                    word(&e.state),
                    e.by
                );
            }
            pending(&mut s, h.pending.as_ref());
        }
        Answer::Audit(records) => {
            for r in records {
                let who = r.who.as_ref().map_or_else(|| "-".to_owned(), Who::label);
                let _ = writeln!(
                    s,
                    "{}  {:<24} {:<16} {:<18} {:<8} {}",
                    r.time,
                    who,
                    r.from,
                    r.action,
                    word(&r.result),
                    r.message
                );
            }
        }
        Answer::Exported { path, bytes } => {
            let _ = writeln!(s, "wrote {} ({bytes} bytes)", path.display());
        }
        Answer::Validated(r) => {
            let v = &r.validation;
            let _ = writeln!(
                s,
                "bundle {} ({}, {} files, {} bytes): valid — {} entries, image {}",
                r.bundle.hash,
                r.bundle.policy,
                r.bundle.files.len(),
                r.bundle.bytes,
                v.entries,
                short(&v.image_hash)
            );
            for w in &v.warnings {
                let _ = writeln!(s, "warning: {w}");
            }
            s.push_str(&v.diff);
        }
        Answer::Applied(r) => {
            if r.unchanged {
                let _ = writeln!(
                    s,
                    "bundle {} is already in force (generation {}); nothing applied",
                    r.bundle.hash, r.generation
                );
            } else {
                let _ = writeln!(
                    s,
                    "applied generation {} — bundle {} ({}), {}",
                    r.generation,
                    r.bundle.hash,
                    r.bundle.policy,
                    word(&r.cause)
                );
            }
            pending(&mut s, r.pending.as_ref());
            if let Some(b) = &r.backend {
                for w in &b.warnings {
                    let _ = writeln!(s, "warning: {w}");
                }
                s.push_str(&b.diff);
            }
        }
        Answer::Confirmed(r) => {
            let _ = writeln!(
                s,
                "generation {} (bundle {}) confirmed at {}",
                r.generation, r.hash, r.confirmed_at
            );
        }
    }
    s
}

fn pending(s: &mut String, p: Option<&Pending>) {
    if let Some(p) = p {
        let _ = writeln!(
            s,
            "pending     generation {} awaits confirmation by {} (armed by {}); else generation {} comes back",
            p.generation, p.deadline, p.armed_by, p.revert_to
        );
    }
}

/// A serialised enum's word (`apply`, `confirmed`, `ok`).
fn word(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::control::FeedStatus;

    #[test]
    fn feed_table_shows_source_age_and_last_error() {
        let row =
            |name: &str, entries, source: &str, age_secs, last_error: Option<&str>| FeedStatus {
                name: name.into(),
                entries,
                source: source.into(),
                age_secs,
                last_error: last_error.map(str::to_owned),
            };
        let table = super::feeds(&[
            row("policy", 2, "policy [blocklist]", None, None),
            row(
                "spamhaus-drop",
                1398,
                "feeds/spamhaus_drop.netset",
                Some(90_000),
                None,
            ),
            row(
                "lab-remote",
                3,
                "https://203.0.113.10:9443/feeds/lab-remote.txt",
                Some(41),
                Some("timeout: no complete answer within 5 s"),
            ),
        ]);
        assert_eq!(
            table,
            "FEED                          ENTRIES  AGE       SOURCE / LAST ERROR
policy                              2  -         policy [blocklist]
spamhaus-drop                    1398  25h       feeds/spamhaus_drop.netset
lab-remote                          3  41s       https://203.0.113.10:9443/feeds/lab-remote.txt
                                                 last error: timeout: no complete answer within 5 s
"
        );
    }
}
