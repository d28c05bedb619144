//! Where the kernel would forward a packet: `bpf_fib_lookup` with the ingress port, as the stack will
//! do right after us, so the route check follows every routing table and rule the box has.

use aya_ebpf::{
    bindings::{BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup as FibParams},
    helpers::generated::bpf_fib_lookup,
    programs::XdpContext,
};
use gateway_common::{Role, values::CFG_FIB_SKIP_NEIGH};

use crate::parse::{Addrs, Packet};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const FIB_SUCCESS: i64 = 0;
const FIB_NOT_FWDED: i64 = 4;
const FIB_NO_NEIGH: i64 = 7;

/// The route of a packet, as far as the policy cares.
pub enum Egress {
    /// Forwarded out of this port: its ifindex and its role, if it is one of ours.
    Port { ifindex: u32, role: Option<Role> },
    /// Delivered to the gateway itself (or broadcast/multicast it does not forward).
    Local,
    /// No usable route: blackhole, unreachable, prohibited, forwarding disabled, …
    Unroutable,
}

impl Egress {
    #[inline(always)]
    pub fn role(&self) -> Option<Role> {
        match self {
            Egress::Port { role, .. } => *role,
            _ => None,
        }
    }

    /// The egress port for flow records; 0 when the packet is not forwarded out of a port.
    #[inline(always)]
    pub fn ifindex(&self) -> u32 {
        match self {
            Egress::Port { ifindex, .. } => *ifindex,
            _ => 0,
        }
    }
}

#[inline(always)]
pub fn egress(ctx: &XdpContext, pkt: &Packet) -> Egress {
    let mut params = core::mem::MaybeUninit::<FibParams>::uninit();
    // SAFETY: bpf_fib_lookup is a plain C struct of integers and unions of integers; all-zero is a
    // valid value for every field.
    let p = unsafe { crate::mem::zero(&mut params) };
    p.l4_protocol = pkt.proto;
    p.sport = pkt.sport.to_be();
    p.dport = pkt.dport.to_be();
    p.ifindex = ctx.ingress_ifindex() as u32;
    // tot_len stays 0: we ask for the route, not for an MTU check.
    match pkt.addrs {
        Addrs::V4 { src, dst } => {
            p.family = AF_INET;
            p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
            p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
        }
        Addrs::V6 { src, dst } => {
            p.family = AF_INET6;
            p.__bindgen_anon_3.ipv6_src = words(src);
            p.__bindgen_anon_4.ipv6_dst = words(dst);
        }
    }
    let flags = if crate::config_flags() & CFG_FIB_SKIP_NEIGH != 0 {
        BPF_FIB_LOOKUP_SKIP_NEIGH
    } else {
        0
    };
    // SAFETY: ctx.ctx is the live xdp_md of this run and `p` a properly sized, initialised struct.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            &raw mut *p,
            core::mem::size_of::<FibParams>() as i32,
            flags,
        )
    };
    match rc {
        FIB_SUCCESS | FIB_NO_NEIGH => Egress::Port {
            ifindex: p.ifindex,
            role: crate::maps::port_role(p.ifindex),
        },
        FIB_NOT_FWDED => Egress::Local,
        _ => Egress::Unroutable,
    }
}

/// IPv6 address bytes as the four network-order words bpf_fib_lookup expects.
#[inline(always)]
fn words(a: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}
