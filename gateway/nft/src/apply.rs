//! Applying a rendered ruleset to the kernel and reading `inet gateway` back, through `nft`.
//!
//! Everything runs in the network namespace of the calling thread.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

use nftables::helper::{self, DEFAULT_NFT, NftablesError};
use nftables::schema::{NfListObject, NfObject, Nftables};

use crate::exprs::{FAMILY, TABLE};

/// The `nft` executable, looked up in `PATH` (as the `nftables` crate's helper does).
const NFT: &str = "nft";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot serialise the ruleset to JSON")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot run {NFT}")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    /// nft or the kernel refused the batch. A transaction is all or nothing: the rules in force are
    /// unchanged. `stderr` is nft's own message, e.g. `Error: Could not process rule: Too many links`.
    #[error("nft refused the ruleset ({status}); the rules in force are unchanged: {stderr}")]
    Refused { status: ExitStatus, stderr: String },
    #[error("cannot read table inet {TABLE} back")]
    Read {
        #[source]
        source: NftablesError,
    },
}

/// The ruleset as pretty JSON for `nft -j -f FILE`, with a final newline: what the image ships and
/// the golden files hold.
pub fn to_json(ruleset: &Nftables<'_>) -> Result<String, NftError> {
    let mut s =
        serde_json::to_string_pretty(ruleset).map_err(|source| NftError::Json { source })?;
    s.push('\n');
    Ok(s)
}

/// Dry run: `nft --check -j -f -` (nft parses and evaluates the batch, nothing is committed). Some
/// refusals only come at commit time (a jump loop, for one), so passing the check does not promise
/// that [`apply()`] succeeds.
pub fn check(ruleset: &Nftables<'_>) -> Result<(), NftError> {
    run_nft(&["--check", "-j", "-f", "-"], ruleset)
}

/// Applies a rendered ruleset in one transaction: `nft -j -f -`, the command the `nftables` crate's
/// `helper::apply_ruleset` runs. It is spawned here rather than through that helper because the
/// helper (0.6) does not capture nft's stderr, which holds the only precise reason for a refusal —
/// including the kernel's, which `--check` cannot foresee.
pub fn apply(ruleset: &Nftables<'_>) -> Result<(), NftError> {
    run_nft(&["-j", "-f", "-"], ruleset)
}

/// Table `inet gateway` as the kernel has it (`nft -j list table inet gateway`), or `None` when there
/// is no such table.
pub fn current() -> Result<Option<Nftables<'static>>, NftError> {
    let tables = helper::get_current_ruleset_with_args(DEFAULT_NFT, &["list", "tables"])
        .map_err(|source| NftError::Read { source })?;
    let ours = tables.objects.iter().any(|o| {
        matches!(o, NfObject::ListObject(NfListObject::Table(t)) if t.family == FAMILY && t.name == TABLE)
    });
    if !ours {
        return Ok(None);
    }
    helper::get_current_ruleset_with_args(DEFAULT_NFT, &["list", "table", "inet", TABLE])
        .map(Some)
        .map_err(|source| NftError::Read { source })
}

fn run_nft(args: &[&str], ruleset: &Nftables<'_>) -> Result<(), NftError> {
    let json = serde_json::to_vec(ruleset).map_err(|source| NftError::Json { source })?;
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NftError::Spawn { source })?;
    // nft reads all of its input before it writes anything, so writing first cannot deadlock. Dropping
    // stdin closes it: nft sees the end of the document. A failed write (nft gone early) needs no
    // report of its own: nft then cannot have read a complete JSON document, so it exits non-zero
    // and its stderr says why.
    if let Some(mut stdin) = child.stdin.take() {
        let _ignored = stdin.write_all(&json);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NftError::Spawn { source })?;
    if !out.status.success() {
        return Err(NftError::Refused {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
