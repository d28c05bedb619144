#!/usr/bin/env python3
"""Reads `gatewayctl stats --json` (CLI contract) and succeeds if lan/blocklist drops were counted."""
import json
import sys

counters = json.load(open(sys.argv[1]))["counters"]
hits = [c for c in counters
        if c["role"] == "lan" and c["reason"] == "blocklist" and c["verdict"] == "drop" and c["packets"] > 0]
if not hits:
    sys.exit(1)
print(f"lan/blocklist drops counted: {sum(c['packets'] for c in hits)} packets")
