//! Running frames through the loaded program with BPF_PROG_TEST_RUN: the verdict and reason of one
//! frame (differential tests) and the kernel's average ns per run (benchmarks).
use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions};
use gateway_common::Reason;

use crate::{Dataplane, DataplaneError, object};

/// What the program did with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// XDP_PASS (2) or XDP_DROP (1).
    pub action: u32,
    /// The reason counted for it.
    pub reason: Reason,
    /// The stats row it was counted in (role, or unknown).
    pub row: &'static str,
}

/// Which program of the object to run.
#[derive(Clone, Copy, Debug)]
pub enum Program {
    Gateway,
    PassOnly,
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it in ctx_in: data, data_end, data_meta,
/// ingress_ifindex, rx_queue_index, egress_ifindex. The ingress ifindex must exist in the caller's
/// network namespace.
fn xdp_md(frame_len: usize, ingress_ifindex: u32) -> [u8; 24] {
    let fields = [0, frame_len as u32, 0, ingress_ifindex, 0, 0];
    let mut out = [0u8; 24];
    for (i, f) in fields.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&f.to_ne_bytes());
    }
    out
}

impl Dataplane {
    /// Runs one frame as if it arrived on `ingress_ifindex` and reports the action and the reason the
    /// program counted (found as the one counter that moved).
    pub fn run_frame(&self, ingress_ifindex: u32, frame: &[u8]) -> Result<RunOutcome, DataplaneError> {
        let before = self.counters()?;
        let result = self.test_run(Program::Gateway, ingress_ifindex, frame, 1)?;
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
        let expected_action = match counted.reason.verdict() {
            gateway_common::Verdict::Pass => 2,
            gateway_common::Verdict::Drop => 1,
        };
        if result.0 != expected_action {
            return Err(DataplaneError::UnexpectedAction(result.0));
        }
        Ok(RunOutcome { action: result.0, reason: counted.reason, row: counted.role })
    }

    /// Runs a frame `repeat` times; returns the XDP action and the kernel's average time per run.
    pub fn test_run(
        &self,
        program: Program,
        ingress_ifindex: u32,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), DataplaneError> {
        let name = match program {
            Program::Gateway => object::PROGRAM,
            Program::PassOnly => object::PASS_ONLY,
        };
        let prog = object::xdp_program_ref(&self.ebpf, name)?;
        let ctx = xdp_md(frame.len(), ingress_ifindex);
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        };
        let r = prog.test_run(opts).map_err(DataplaneError::TestRun)?;
        Ok((r.return_value, r.duration))
    }
}
