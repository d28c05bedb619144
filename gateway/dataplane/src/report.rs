//! What the kernel's verifier made of each program: the instructions it processed (the budget a
//! data-path change spends, and what an older kernel may refuse) and the sizes it left. On a refused
//! load, the end of the verifier's log, which is where the kernel says why.
use aya::{Ebpf, programs::ProgramError};

use crate::DataplaneError;

/// Instructions the verifier may process for a privileged load before it gives up with
/// "BPF program is too large" (`BPF_COMPLEXITY_LIMIT_INSNS`, the same since kernel 5.2).
pub const VERIFIER_INSN_LIMIT: u32 = 1_000_000;

/// One program of the loaded object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramReport {
    /// The program's name in the object (its function name).
    pub name: String,
    /// What the kernel says of it; `None` when the object has it but the loader did not load it.
    pub loaded: Option<Verified>,
}

/// The kernel's figures for one loaded program (`BPF_OBJ_GET_INFO_BY_FD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub id: u32,
    /// Instructions the verifier processed; `None` before kernel 5.16, which does not report it.
    pub verified_insns: Option<u32>,
    /// Size of the program after the verifier rewrote it; `None` when the kernel hides it.
    pub xlated_bytes: Option<u32>,
    /// Size of the JIT's machine code (0 without a JIT).
    pub jited_bytes: u32,
}

impl Verified {
    /// Share of [`VERIFIER_INSN_LIMIT`] spent, in percent.
    pub fn limit_percent(&self) -> Option<f64> {
        self.verified_insns
            .map(|n| f64::from(n) * 100.0 / f64::from(VERIFIER_INSN_LIMIT))
    }
}

/// Every program the object has, loaded or not, by name. Iterating the object (rather than a list
/// of names) means a program added to it later is reported without touching this code.
pub(crate) fn programs(ebpf: &Ebpf) -> Result<Vec<ProgramReport>, DataplaneError> {
    let mut out = Vec::new();
    for (name, program) in ebpf.programs() {
        let loaded = match program.info() {
            Ok(info) => Some(Verified {
                id: info.id(),
                verified_insns: info.verified_instruction_count(),
                xlated_bytes: info.size_translated(),
                jited_bytes: info.size_jitted(),
            }),
            Err(ProgramError::NotLoaded) => None,
            Err(source) => {
                return Err(DataplaneError::ProgramInfo {
                    name: name.to_owned(),
                    source,
                });
            }
        };
        out.push(ProgramReport {
            name: name.to_owned(),
            loaded,
        });
    }
    // The object keeps its programs in a hash map: sort so that two runs print the same table.
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A program the kernel refused, with what the verifier said last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub program: &'static str,
    /// The `BPF_PROG_LOAD` error, e.g. "Argument list too long (os error 7)" for a too-large program.
    pub error: String,
    /// From the log's "processed N insns" line, when it has one.
    pub processed_insns: Option<u64>,
    /// The last non-empty lines of the verifier's log.
    pub log_tail: Vec<String>,
}

impl DataplaneError {
    /// When this is the kernel refusing a program, what it said: the full log can run to thousands
    /// of lines (the path the verifier walked); the verdict is in its last few.
    pub fn rejection(&self, tail_lines: usize) -> Option<Rejection> {
        let DataplaneError::Program {
            name,
            source:
                ProgramError::LoadError {
                    io_error,
                    verifier_log,
                },
        } = self
        else {
            return None;
        };
        let log = verifier_log.to_string();
        Some(Rejection {
            program: name,
            error: io_error.to_string(),
            processed_insns: processed_insns(&log),
            log_tail: log_tail(&log, tail_lines),
        })
    }
}

/// The last `n` non-empty lines of a verifier log, trimmed.
pub fn log_tail(log: &str, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = log
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .rev()
        .take(n)
        .map(str::to_owned)
        .collect();
    lines.reverse();
    lines
}

/// The count of the verifier's closing statistics line, "processed N insns (limit M) …" (the last
/// such line: a log holds one per load attempt at most, but a subprogram dump may quote others).
pub fn processed_insns(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("processed "))
        .find_map(|rest| {
            let (n, unit) = rest.split_once(' ')?;
            unit.starts_with("insns").then(|| n.parse().ok()).flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of kernel 6.1's log for the DNS branch's program, as gatewayd printed it (journal
    /// prefixes removed): /work/briefs/verifier-6.1-serial.log, lines 2300-2326.
    const TOO_LARGE_6_1: &str = include_str!("../fixtures/verifier-6.1-too-large.log");

    #[test]
    fn too_large_log_yields_the_count_and_the_verdict_lines() {
        assert_eq!(processed_insns(TOO_LARGE_6_1), Some(1_000_001));
        let tail = log_tail(TOO_LARGE_6_1, 4);
        assert_eq!(
            tail,
            [
                "BPF program is too large. Processed 1000001 insn",
                "verification time 27298512 usec",
                "stack depth 96+296+32+4+16+0+120+88+0+104+264",
                "processed 1000001 insns (limit 1000000) max_states_per_insn 22 total_states \
                 18922 peak_states 6026 mark_read 45",
            ]
        );
    }

    #[test]
    fn tail_skips_blank_lines_and_keeps_order() {
        assert_eq!(log_tail("a\n\nb\n  \nc\n\n", 2), ["b", "c"]);
        assert_eq!(log_tail("a\n", 5), ["a"]);
        assert!(log_tail("", 3).is_empty());
    }

    #[test]
    fn logs_without_statistics_have_no_count() {
        // A refusal for another reason (here an invalid access) still has a tail, but the count
        // is only taken from the statistics line, never from the instruction dump.
        let log = "0: (61) r2 = *(u32 *)(r1 +0)\ninvalid access to packet, off=0 size=4\n";
        assert_eq!(processed_insns(log), None);
        assert_eq!(
            processed_insns("processed 42 insns (limit 1000000) max_states_per_insn 0"),
            Some(42)
        );
        assert_eq!(processed_insns("processed 7 things"), None);
    }

    #[test]
    fn percent_of_the_limit() {
        let v = Verified {
            id: 1,
            verified_insns: Some(250_000),
            xlated_bytes: Some(8),
            jited_bytes: 8,
        };
        assert_eq!(v.limit_percent(), Some(25.0));
        let old_kernel = Verified {
            verified_insns: None,
            ..v
        };
        assert_eq!(old_kernel.limit_percent(), None);
    }
}
