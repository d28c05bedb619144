//! The `[telemetry]` section: defaults, a full valid section, and the exact refusals an admin sees.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use std::time::Duration;

use common::{BASE, err};
use gateway_policy::{
    parse_policy,
    telemetry::{ClientTransport, FlowFormat, Telemetry},
};

fn telemetry(extra: &str) -> Telemetry {
    let text = format!("{BASE}{extra}");
    let (policy, _) = parse_policy(
        &text,
        std::path::Path::new("/etc/gw/p.toml"),
        &common::lab_profile(),
    )
    .unwrap();
    policy.telemetry
}

#[test]
fn absent_section_means_defaults() {
    let t = telemetry("");
    assert_eq!(t, Telemetry::default());
    assert_eq!(t.flows.idle_timeout, Duration::from_secs(15));
    assert_eq!((t.alerts.burst, t.alerts.window_ms), (20, 1000));
    assert!(t.collectors.is_empty() && t.syslog.is_empty() && t.metrics.is_none());
}

#[test]
fn full_section() {
    let t = telemetry(
        r#"
[telemetry.flows]
active_timeout_secs = 30
idle_timeout_secs = 5

[[telemetry.collector]]
name = "nfcapd"
address = "172.16.0.2:2055"
format = "netflow9"
transport = "udp"
template_refresh_secs = 10

[[telemetry.collector]]
name = "soc-tls"
address = "[fd00:200::9]:4740"
format = "ipfix"
transport = "tls"
ca = "soc/ca.pem"
cert = "/data/identity/cert.pem"
key = "/data/identity/key.pem"

[telemetry.alerts]
burst = 5
window_ms = 2000

[[telemetry.syslog]]
name = "siem"
address = "172.16.0.2:6514"
transport = "tcp"
facility = "security"

[telemetry.metrics]
listen = "172.16.0.1:9100"
cert = "m.pem"
key = "m.key"
client_ca = "soc/ca.pem"
"#,
    );
    assert_eq!(t.flows.active_timeout, Duration::from_secs(30));
    assert_eq!(t.collectors.len(), 2);
    assert_eq!(t.collectors[0].format, FlowFormat::NetflowV9);
    assert_eq!(t.collectors[0].template_refresh, Duration::from_secs(10));
    let ClientTransport::Tls(tls) = &t.collectors[1].transport else {
        panic!("tls expected")
    };
    assert_eq!(tls.ca, std::path::Path::new("/etc/gw/soc/ca.pem"));
    assert_eq!(tls.server_name, "fd00:200::9");
    assert_eq!(
        tls.identity.as_ref().unwrap().0,
        std::path::Path::new("/data/identity/cert.pem")
    );
    assert_eq!((t.alerts.burst, t.alerts.window_ms), (5, 2000));
    assert_eq!(t.syslog[0].facility, 4);
    let m = t.metrics.unwrap();
    assert_eq!(m.listen.port(), 9100);
    assert!(m.tls.unwrap().client_ca.is_some());
}

#[test]
fn refusals_name_line_and_field() {
    let c = |body: &str| {
        err(&format!(
            "{BASE}\n[[telemetry.collector]]\nname = \"c\"\n{body}"
        ))
    };
    assert_eq!(
        c("address = \"soc.example:2055\"\nformat = \"ipfix\"\ntransport = \"udp\"\n"),
        "p.toml:34: telemetry.collector.address: \"soc.example:2055\" is not an IP address with a port (\"192.0.2.1:2055\", \"[2001:db8::1]:4739\"); names are not resolved"
    );
    assert_eq!(
        c("address = \"192.0.2.1:2055\"\nformat = \"sflow\"\ntransport = \"udp\"\n"),
        "p.toml:35: telemetry.collector.format: unknown format \"sflow\"; expected \"ipfix\" or \"netflow9\""
    );
    assert_eq!(
        c("address = \"192.0.2.1:2055\"\nformat = \"ipfix\"\ntransport = \"tls\"\n"),
        "p.toml:36: telemetry.collector.ca: transport \"tls\" needs `ca`, the CA bundle the server's certificate chains to"
    );
    assert_eq!(
        c(
            "address = \"192.0.2.1:2055\"\nformat = \"ipfix\"\ntransport = \"udp\"\nca = \"x.pem\"\n"
        ),
        "p.toml:37: telemetry.collector: TLS settings given but transport is \"udp\""
    );
    assert_eq!(
        err(&format!(
            "{BASE}\n[[telemetry.syslog]]\nname = \"s\"\naddress = \"192.0.2.1:514\"\ntransport = \"udp\"\n"
        )),
        "p.toml:35: telemetry.syslog.transport: unknown transport \"udp\"; expected \"tcp\" or \"tls\" (syslog over UDP would lose alerts without a trace)"
    );
    assert_eq!(
        c("address = \"192.0.2.1:2055\"\nformat = \"netflow9\"\ntransport = \"tcp\"\n"),
        "p.toml:36: telemetry.collector.transport: NetFlow v9 messages carry no length and cannot be framed on a TCP or TLS stream; use format \"ipfix\" or transport \"udp\""
    );
    assert_eq!(
        err(&format!(
            "{BASE}\n[telemetry.flows]\nidle_timeout_secs = 120\nactive_timeout_secs = 60\n"
        )),
        "p.toml:33: telemetry.flows.idle_timeout_secs: 120 s is longer than the active timeout (60 s)"
    );
    assert_eq!(
        err(&format!("{BASE}\n[telemetry.alerts]\nburst = 0\n")),
        "p.toml:33: telemetry.alerts.burst: 0 is out of range; expected 1..=10000"
    );
    assert_eq!(
        err(&format!(
            "{BASE}\n[[telemetry.collector]]\nname = \"x\"\naddress = \"192.0.2.1:1\"\nformat = \"ipfix\"\ntransport = \"udp\"\n[[telemetry.syslog]]\nname = \"x\"\naddress = \"192.0.2.1:2\"\ntransport = \"tcp\"\n"
        )),
        "p.toml:38: telemetry.syslog.name: \"x\" already names a collector or syslog target (line 33)"
    );
    assert_eq!(
        err(&format!(
            "{BASE}\n[telemetry.metrics]\nlisten = \"0.0.0.0:9100\"\nclient_ca = \"ca.pem\"\n"
        )),
        "p.toml:34: telemetry.metrics.client_ca: client certificates need TLS: give `cert` and `key` too"
    );
}

#[test]
fn the_local_alert_log_name_is_reserved() {
    assert_eq!(
        err(&format!(
            "{BASE}\n[[telemetry.syslog]]\nname = \"local-log\"\naddress = \"192.0.2.1:514\"\ntransport = \"tcp\"\n"
        )),
        "p.toml:33: telemetry.syslog.name: \"local-log\" is the name of the gateway's own alert log"
    );
}
