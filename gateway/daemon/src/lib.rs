//! gatewayd and gatewayctl.
