//! Running frames through the loaded program with BPF_PROG_TEST_RUN: the verdict and reason of one
//! frame (differential tests) and the kernel's average ns per run (benchmarks).
//!
//! A [`Runner`] owns a duplicate of a program's fd, so it can run frames from another thread while
//! the [`Dataplane`] is busy applying a policy (the benchmark checks enforcement never lapses).
use std::{
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    time::Duration,
};

use gateway_common::Reason;

use crate::{Dataplane, DataplaneError, object};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// A blocked DNS query answered in place goes back out of its port.
pub const XDP_TX: u32 = 3;

/// What the program did with one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// XDP_PASS or XDP_DROP.
    pub action: u32,
    /// The reason counted for it.
    pub reason: Reason,
    /// The stats row it was counted in (role, or unknown).
    pub row: &'static str,
    /// The frame as the program left it (for XDP_TX: the answer sent back).
    pub frame: Vec<u8>,
}

/// Which program of the object to run.
#[derive(Clone, Copy, Debug)]
pub enum Program {
    Gateway,
    PassOnly,
}

/// A handle that runs frames through one program.
#[derive(Debug)]
pub struct Runner {
    prog: OwnedFd,
}

/// `bpf_attr` for BPF_PROG_TEST_RUN (the `test` member of the kernel's union).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it in ctx_in: data, data_end, data_meta,
/// ingress_ifindex, rx_queue_index, egress_ifindex. The ingress ifindex must exist in the caller's
/// network namespace.
fn xdp_md(frame_len: usize, ingress_ifindex: u32) -> [u32; 6] {
    [0, frame_len as u32, 0, ingress_ifindex, 0, 0]
}

/// The BPF_PROG_TEST_RUN syscall; the kernel fills `attr`'s outputs (retval, duration, data_size_out).
///
/// # Safety
/// Every pointer in `attr` must reference memory alive for the call, writable where the kernel
/// writes (`data_out` for `data_size_out` bytes).
unsafe fn test_run(attr: &mut TestRunAttr) -> Result<(), DataplaneError> {
    // SAFETY: `attr` is a BPF_PROG_TEST_RUN attribute of the size given; the caller vouches for
    // the memory it points to.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(DataplaneError::TestRun(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Runner {
    /// Runs `frame` `repeat` times as if it arrived on `ingress_ifindex`; returns the XDP action and
    /// the kernel's average time per run.
    pub fn run(
        &self,
        ingress_ifindex: u32,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), DataplaneError> {
        let ctx = xdp_md(frame.len(), ingress_ifindex);
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ctx_size_in: std::mem::size_of_val(&ctx) as u32,
            ctx_in: ctx.as_ptr() as u64,
            ..TestRunAttr::default()
        };
        // SAFETY: the pointers of `attr` reference `frame` and `ctx`, both alive for the call; no
        // output buffers are given.
        unsafe { test_run(&mut attr)? };
        Ok((attr.retval, Duration::from_nanos(attr.duration as u64)))
    }

    /// Runs `frame` once; returns the XDP action and the frame as the program left it (resized
    /// or rewritten in place).
    pub fn run_once(
        &self,
        ingress_ifindex: u32,
        frame: &[u8],
    ) -> Result<(u32, Vec<u8>), DataplaneError> {
        let ctx = xdp_md(frame.len(), ingress_ifindex);
        // Room for any growth the program may make (a DNS answer adds at most a few dozen bytes).
        let mut out = vec![0u8; frame.len() + 4096];
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_size_out: out.len() as u32,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ctx_size_in: std::mem::size_of_val(&ctx) as u32,
            ctx_in: ctx.as_ptr() as u64,
            ..TestRunAttr::default()
        };
        // SAFETY: the pointers of `attr` reference `frame`, `ctx` and `out`, all alive for the call;
        // `out` is writable for `data_size_out` bytes.
        unsafe { test_run(&mut attr)? };
        out.truncate(attr.data_size_out as usize);
        Ok((attr.retval, out))
    }
}

impl Dataplane {
    /// A runner for one of the object's programs.
    pub fn runner(&self, program: Program) -> Result<Runner, DataplaneError> {
        let name = match program {
            Program::Gateway => object::PROGRAM,
            Program::PassOnly => object::PASS_ONLY,
        };
        let prog = object::xdp_program_ref(&self.ebpf, name)?
            .fd()
            .map_err(|source| DataplaneError::Program { name, source })?
            .as_fd()
            .try_clone_to_owned()
            .map_err(DataplaneError::TestRun)?;
        Ok(Runner { prog })
    }

    /// Runs one frame and reports the action and the reason the program counted (found as the one
    /// counter that moved; nothing else may run this program meanwhile).
    pub fn run_frame(
        &self,
        runner: &Runner,
        ingress_ifindex: u32,
        frame: &[u8],
    ) -> Result<RunOutcome, DataplaneError> {
        let before = self.counters()?;
        let (action, out) = runner.run_once(ingress_ifindex, frame)?;
        let after = self.counters()?;
        let moved: Vec<_> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| a.packets != b.packets)
            .map(|(_, a)| a)
            .collect();
        let [counted] = moved.as_slice() else {
            return Err(DataplaneError::CountersMoved(moved.len()));
        };
        let expected = match counted.reason.verdict() {
            gateway_common::Verdict::Pass => XDP_PASS,
            gateway_common::Verdict::Drop => XDP_DROP,
        };
        let answered = action == XDP_TX && counted.reason == Reason::Domain;
        if action != expected && !answered {
            return Err(DataplaneError::UnexpectedAction(action));
        }
        Ok(RunOutcome {
            action,
            reason: counted.reason,
            row: counted.role,
            frame: out,
        })
    }
}
