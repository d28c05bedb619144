#!/usr/bin/env bash
# README command one: the namespace lab — a LAN client, the gateway with three ports, a dedicated-network
# server hosting a shared system, an internet server and a blocklisted host — with gatewayd enforcing
# configs/ward-office.toml, demo traffic, and a table of what passed and what was dropped and why.
# Everything is torn down on exit. Needs root.   Usage: sudo scripts/lab.sh [demo|up] [--policy FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p gateway-daemon -p gateway-tests --bins
export GATEWAYD="$PWD/target/release/gatewayd" GATEWAYCTL="$PWD/target/release/gatewayctl"
if [ $# -eq 0 ]; then set -- demo; fi
exec target/release/gateway-lab "$@"
