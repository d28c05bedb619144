//! Prints a ruleset as JSON for `nft -j -f FILE`.
//!
//! ```sh
//! cargo run -p gateway-nft --example render -- boot hw/lab-veth.toml 9100 > gateway-boot.json
//! cargo run -p gateway-nft --example render -- run hw/lab-veth.toml configs/ward-office.toml \
//!     --mgmt 10.10.0.0/28 --mgmt fd00:10::/124 --api 8443 --metrics 9464 [--ssh 22]
//! ```
use std::path::Path;

use anyhow::{Context, bail};
use gateway_nft::{BootInput, Management, NftInput, render, render_boot, to_json};
use gateway_policy::{load_policy, load_profile};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ruleset = match args.first().map(String::as_str) {
        Some("boot") => {
            let [_, profile, metrics @ ..] = args.as_slice() else {
                bail!("usage: boot PROFILE [METRICS_TCP_PORT]...");
            };
            let profile = load_profile(Path::new(profile))?;
            let metrics = metrics
                .iter()
                .map(|p| {
                    p.parse::<u16>()
                        .with_context(|| format!("metrics port {p}"))
                })
                .collect::<anyhow::Result<_>>()?;
            render_boot(&BootInput::from_profile(&profile, metrics))
        }
        Some("run") => {
            let [_, profile, policy, rest @ ..] = args.as_slice() else {
                bail!(
                    "usage: run PROFILE POLICY [--mgmt PREFIX]... [--api P] [--metrics P] [--ssh P]"
                );
            };
            let profile = load_profile(Path::new(profile))?;
            let (policy, _warnings) = load_policy(Path::new(policy), &profile)?;
            let mut management = Management::default();
            for pair in rest.chunks(2) {
                let [flag, value] = pair else {
                    bail!("{} needs a value", pair[0])
                };
                let port = || {
                    value
                        .parse::<u16>()
                        .with_context(|| format!("{flag} {value}"))
                };
                match flag.as_str() {
                    "--mgmt" => management
                        .prefixes
                        .push(value.parse().with_context(|| format!("--mgmt {value}"))?),
                    "--api" => management.api_port = Some(port()?),
                    "--metrics" => management.metrics_port = Some(port()?),
                    "--ssh" => management.ssh_port = Some(port()?),
                    other => bail!("unknown option {other}"),
                }
            }
            render(&NftInput::from_policy(&profile, &policy, management))
        }
        _ => bail!("usage: render boot | render run PROFILE POLICY [options]"),
    };
    print!("{}", to_json(&ruleset)?);
    Ok(())
}
