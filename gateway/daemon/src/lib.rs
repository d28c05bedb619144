//! gatewayd (the daemon that owns the data path) and gatewayctl (its command line).
//!
//! They speak newline-delimited JSON over a Unix socket (`control`): one request, one response per
//! connection. `engine` is the daemon's state and the only place that changes the data path;
//! `render` turns responses into the tables gatewayctl prints; `telemetry` sends flows, alerts and
//! metrics to the SOC; `feeds` fetches remote feeds over HTTPS; `audit_soc` sends the API's audit
//! records to the SOC.
pub mod api_identity;
pub mod audit_soc;
pub mod backend;
pub mod control;
pub mod engine;
pub mod feeds;
pub mod firewall;
pub mod journal;
pub mod learnt;
pub mod notify;
pub mod remote;
pub mod render;
pub mod server;
pub mod telemetry;

/// Default locations on the appliance.
pub mod defaults {
    pub const PIN_DIR: &str = "/sys/fs/bpf/gateway";
    pub const STATE_DIR: &str = "/var/lib/gateway";
    pub const SOCKET: &str = "/run/gateway/gatewayd.sock";
}
