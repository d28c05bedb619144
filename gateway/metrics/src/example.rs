//! A realistic snapshot of a ward-office gateway after a few days of traffic: what the tests, the
//! `promtool` check and documentation render. Every list has at least one entry, so every family
//! of the catalogue appears in its exposition.
use std::time::{Duration, UNIX_EPOCH};

use gateway_common::{Reason, Role};

use crate::snapshot::{
    AlertEvents, AlertSink, Build, DomainBeyond, FeedFailure, FeedKind, FeedStatus, FlowCollector,
    FlowFormat, FlowTable, PolicyStatus, PortStatus, RemoteFeedStatus, Snapshot, Traffic,
    Transport, VerdictCounters, XdpMode,
};

/// The example snapshot (see the module documentation).
pub fn example() -> Snapshot {
    let mut verdicts = VerdictCounters::default();
    for (role, reason, packets, bytes) in [
        (Some(Role::Lan), Reason::Pass, 48_211_907, 41_002_318_114),
        (Some(Role::Lan), Reason::NonIp, 120_334, 7_702_000),
        (Some(Role::Lan), Reason::Blocklist, 1_822, 131_000),
        (Some(Role::Lan), Reason::Isolated, 37, 2_590),
        (Some(Role::Lan), Reason::NotAllowed, 12, 864),
        (Some(Role::Lan), Reason::SharedViaInternet, 3, 252),
        (Some(Role::Lan), Reason::Malformed, 2, 98),
        (
            Some(Role::Dedicated),
            Reason::Pass,
            5_530_112,
            3_911_442_770,
        ),
        (Some(Role::Dedicated), Reason::DedicatedForeign, 4, 336),
        (
            Some(Role::Internet),
            Reason::Pass,
            51_003_114,
            60_441_987_001,
        ),
        (Some(Role::Internet), Reason::BlocklistIn, 88_017, 5_280_100),
        (Some(Role::Internet), Reason::Spoofed, 511, 30_660),
        (Some(Role::Internet), Reason::CrossNetwork, 9, 540),
        (None, Reason::UnknownPort, 0, 0),
    ] {
        verdicts.set(role, reason, Traffic { packets, bytes });
    }
    Snapshot {
        build: Build {
            version: "0.1.0".to_owned(),
            commit: Some("2360ab3".to_owned()),
        },
        verdicts,
        flow_table: FlowTable {
            entries: 18_204,
            capacity: 262_144,
            flows_created: 9_120_448,
            evictions: 0,
            insert_failures: 0,
        },
        collectors: vec![
            FlowCollector {
                name: "soc-province".to_owned(),
                format: FlowFormat::Ipfix,
                transport: Transport::Tls,
                records: 9_101_337,
                bytes: 1_019_349_744,
                messages: 417_622,
                errors: 3,
                records_lost: 0,
                spooled_records: 0,
                spooled_bytes: 0,
                up: true,
            },
            FlowCollector {
                name: "soc-national".to_owned(),
                format: FlowFormat::NetflowV9,
                transport: Transport::Udp,
                records: 9_098_001,
                bytes: 891_604_098,
                messages: 606_534,
                errors: 0,
                records_lost: 1_200,
                spooled_records: 4_096,
                spooled_bytes: 458_752,
                up: false,
            },
        ],
        alert_events: AlertEvents {
            emitted: 61_004,
            suppressed: 29_411,
            lost: 0,
        },
        alert_sinks: vec![
            AlertSink {
                name: "soc-syslog".to_owned(),
                sent: 61_000,
                lost: 0,
                queued: 4,
                up: true,
            },
            AlertSink {
                name: "local-file".to_owned(),
                sent: 61_004,
                lost: 0,
                queued: 0,
                up: true,
            },
        ],
        policy: Some(PolicyStatus {
            name: "ward-office".to_owned(),
            version: "2026.07.1".to_owned(),
            hash: "9f2c4e1a7b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8".to_owned(),
            generation: 14,
            last_apply: Duration::from_millis(836),
            applied_at: UNIX_EPOCH + Duration::from_secs(1_784_012_400),
            compile: Duration::from_millis(109),
        }),
        feeds: vec![
            FeedStatus {
                name: "soc-indicators".to_owned(),
                kind: FeedKind::Ip,
                entries: 1_204,
                age: Some(Duration::from_secs(1_800)),
                remote: Some(RemoteFeedStatus {
                    last_success: Some(UNIX_EPOCH + Duration::from_secs(1_784_012_400)),
                    last_ok: false,
                    failures: {
                        let mut f = [0; FeedFailure::ALL.len()];
                        f[FeedFailure::Timeout.index()] = 2;
                        f
                    },
                }),
            },
            FeedStatus {
                name: "spamhaus-drop".to_owned(),
                kind: FeedKind::Ip,
                entries: 1_398,
                age: Some(Duration::from_secs(86_400 + 3_600)),
                remote: None,
            },
            FeedStatus {
                name: "feodo".to_owned(),
                kind: FeedKind::Ip,
                entries: 412,
                age: Some(Duration::from_secs(7_200)),
                remote: None,
            },
        ],
        ports: vec![
            port("lan0", Role::Lan, "enp1s0"),
            port("ded0", Role::Dedicated, "enp2s0"),
            port("inet0", Role::Internet, "enp3s0"),
        ],
        domain_beyond: DomainBeyond {
            events: vec![
                ("sni_checked", 1_204_331),
                ("sni_blocked", 212),
                ("sni_malformed", 3),
                ("sni_split", 5_410),
                ("learn_responses", 41),
                ("learn_inserts", 97),
                ("learn_hits", 18),
                ("learn_stale", 0),
                ("learn_expired", 12),
                ("learn_swept", 71),
            ],
            learnt_v4: 9,
            learnt_v6: 5,
            capacity: 16_384,
        },
    }
}

fn port(name: &str, role: Role, ifname: &str) -> PortStatus {
    PortStatus {
        name: name.to_owned(),
        role,
        ifname: ifname.to_owned(),
        xdp_mode: XdpMode::Native,
        attached: true,
    }
}
