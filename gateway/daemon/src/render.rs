//! How gatewayctl prints responses for people (`--json` prints them as they came).
use std::fmt::Write as _;

use crate::control::{ApplyResult, StatsReport, StatusReport};

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
    let _ = writeln!(s, "\nFEED                          ENTRIES");
    for f in &r.feeds {
        let _ = writeln!(s, "{:<29} {}", f.name, f.entries);
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

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}
