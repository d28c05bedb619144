//! Empty on purpose: the program is the `gateway-xdp` binary (main.rs). This library target exists so
//! gateway-dataplane can name this crate as a build-dependency, which makes cargo rebuild the embedded
//! object whenever this crate or gateway-common changes.
#![no_std]
