//! The refusal contract every `PolicyError` keeps, checked by the mutation tests
//! (`tests/fuzz_mutations.rs`) and the libFuzzer targets (`fuzz/`), which include this file.
use std::path::Path;

use gateway_policy::PolicyError;

/// The refusal contract: a file under `dir` (the policy's directory), a line inside that file, a
/// field, a message. `file` is the file parsed from memory (`text`); any other file named is read.
pub fn check_refusal(e: &PolicyError, dir: &Path, file: &Path, text: &str) {
    let policy_text = if e.path == file { text } else { "" };
    let at = |n: u32| {
        policy_text
            .lines()
            .nth(n.saturating_sub(1) as usize)
            .unwrap_or("")
    };
    let shown = format!(
        "{e} (source {:?}; line {:?})",
        std::error::Error::source(e).map(ToString::to_string),
        at(e.line)
    );
    assert!(
        e.path.starts_with(dir),
        "error names a file outside the policy's directory: {shown}"
    );
    assert!(!e.field.is_empty(), "error without a field: {shown}");
    assert!(!e.message.is_empty(), "error without a message: {shown}");
    let lines_in = |text: &str| u32::try_from(text.lines().count()).unwrap() + 1;
    let max_line = if e.path == file {
        lines_in(text)
    } else {
        std::fs::read_to_string(&e.path).map_or(u32::MAX, |t| lines_in(&t))
    };
    assert!(
        (1..=max_line).contains(&e.line),
        "line {} outside the file (1..={max_line}): {shown}",
        e.line
    );
}
