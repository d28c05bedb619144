//! Domain feeds (issue 6): hosts files, plain domain lists and RPZ zones → normalised entries
//! ([`DomainEntries`]), and the compiled, de-duplicated set ([`DomainSet`]) the data path's domain
//! map and the reference model are built from.
//!
//! | format  | shape |
//! |---------|-------|
//! | `hosts` | `0.0.0.0 a.example b.example`; any IPv4/IPv6 address (`%zone` ignored); `#` comments anywhere. The hosts file's own names (`localhost`, `broadcasthost`, `ip6-allnodes`, …) are ignored and counted. An address other than unspecified/loopback is kept as the sinkhole. |
//! | `list`  | one name per line; `#`, `;`, `!` comments (at the start of a line or after blanks); `*.name` or `.name` = the name and everything under it, explicitly; adblock `\|\|name^` likewise, `@@\|\|name^` an exception; `[Adblock Plus …]` headers skipped |
//! | `rpz`   | DNS Response Policy Zone (draft-vixie-dnsop-dns-rpz) master file; see [`rpz`] |
//!
//! Names are normalised by [`normalise`]: lowercase, trailing dot removed, IDNA → punycode, labels
//! ≤ 63 bytes, name ≤ 253, letters/digits/`-`/`_` only.
//!
//! **Reach of an entry** ([`Scope`]): a bare name in a hosts file or list blocks the name and every
//! name under it (`Subtree`), unless the policy asks for exact names only (the `bare` argument);
//! `*.`/`.`/`||…^` always mean `Subtree`. RPZ says it itself: `name` is `Exact`, `*.name` is `Below`
//! (every name under it, not the name itself), as RPZ resolvers do.
//!
//! **Bad lines refuse the feed**, as in [`crate::feeds`]: a malformed line is an error naming
//! `file:line: entry:` and the text — a half-read blocklist would silently unblock what it failed to
//! read, and the caller keeps the running policy. What is well-formed but not a block is counted and,
//! where an admin should know, warned about (the first few one by one, the rest in one summary
//! warning, as `feeds` does for normalised prefixes): the hosts file's own `localhost`-style names
//! (counted only), RPZ triggers and actions the data path cannot enforce (`rpz-ip`, `rpz-nsdname`,
//! `rpz-tcp-only`, … — warned and skipped), and single-label subtree entries such as `zip` that
//! block a whole top-level domain (warned, kept).

mod hosts;
mod list;
mod name;
pub mod rpz;
mod set;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use gateway_common::dname::{BLOCK_APEX, BLOCK_BELOW, PASS_APEX, PASS_BELOW};

use crate::error::{ErrorKind, PolicyError, Warning, quote};

pub use name::{NameError, normalise};
pub use set::{DomainFeed, DomainFeedStats, DomainMatch, DomainRule, DomainSet, Sinkhole, Via};

/// Domain feed formats, as a policy would name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainFormat {
    Hosts,
    List,
    Rpz,
}

impl DomainFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            DomainFormat::Hosts => "hosts",
            DomainFormat::List => "list",
            DomainFormat::Rpz => "rpz",
        }
    }
}

impl fmt::Display for DomainFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which names an entry reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The name itself only.
    Exact,
    /// The name and every name under it.
    Subtree,
    /// Every name under it, not the name itself (RPZ `*.name`).
    Below,
}

impl Scope {
    /// The data-path flag bits (`gateway_common::dname`) of an entry with this scope and action.
    pub const fn flags(self, action: Action) -> u8 {
        let (apex, below) = match action {
            Action::Block => (BLOCK_APEX, BLOCK_BELOW),
            Action::Pass => (PASS_APEX, PASS_BELOW),
        };
        match self {
            Scope::Exact => apex,
            Scope::Subtree => apex | below,
            Scope::Below => below,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Exact => "exact",
            Scope::Subtree => "subtree",
            Scope::Below => "below",
        }
    }
}

/// What an entry asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Block (RPZ NXDOMAIN, NODATA, drop and local data all block in the gateway).
    Block,
    /// An exception: never blocked, even under a blocked parent (RPZ `rpz-passthru.`, adblock `@@`).
    Pass,
}

/// One entry of a feed, as [`DomainEntries::iter`] yields it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainEntry<'a> {
    /// Normalised name (for `Below`, the parent: `*.example.com` is `example.com`).
    pub name: &'a str,
    /// 1-based line of the feed (the first line of a multi-line RPZ record).
    pub line: u32,
    pub scope: Scope,
    pub action: Action,
    /// The address the feed answers with (hosts address other than 0.0.0.0/127.x/::/::1, RPZ A/AAAA
    /// local data); informative, the data path blocks either way.
    pub sinkhole: Option<IpAddr>,
}

/// Everything a domain feed contributes, in file order (duplicates included; [`DomainSet`]
/// de-duplicates). Names live in one string so a million entries cost ~16 bytes each plus the name.
#[derive(Clone, Debug)]
pub struct DomainEntries {
    /// The file, for messages.
    pub path: PathBuf,
    pub format: DomainFormat,
    names: String,
    items: Vec<Item>,
    /// Sinkhole addresses of the entries that have one (`Item::sinkhole` indexes it).
    sinkholes: Vec<IpAddr>,
    /// Hosts-file names of the file itself (`localhost`, …), ignored.
    pub ignored_local: u64,
    /// Well-formed records the data path cannot enforce (RPZ `rpz-ip` triggers, …), skipped.
    pub unsupported: u64,
    pub warnings: Vec<Warning>,
    /// Warning budgets (see the module doc).
    unsupported_notes: Capped,
    tld_notes: Capped,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    name_at: u32,
    line: u32,
    sinkhole: u32,
    name_len: u8,
    scope: Scope,
    action: Action,
}

const NO_SINKHOLE: u32 = u32::MAX;

impl DomainEntries {
    fn new(path: &Path, format: DomainFormat) -> Self {
        DomainEntries {
            path: path.to_path_buf(),
            format,
            names: String::new(),
            items: Vec::new(),
            sinkholes: Vec::new(),
            ignored_local: 0,
            unsupported: 0,
            warnings: Vec::new(),
            unsupported_notes: Capped::default(),
            tld_notes: Capped::default(),
        }
    }

    /// Entries read (before any de-duplication).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<DomainEntry<'_>> {
        self.items.get(index).map(|it| self.view(it))
    }

    /// Entry `index` (< `len()`), for the set builder's sorted indices.
    pub(super) fn at(&self, index: usize) -> DomainEntry<'_> {
        self.view(&self.items[index])
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = DomainEntry<'_>> + '_ {
        self.items.iter().map(|it| self.view(it))
    }

    fn view(&self, it: &Item) -> DomainEntry<'_> {
        let at = it.name_at as usize;
        DomainEntry {
            name: &self.names[at..at + it.name_len as usize],
            line: it.line,
            scope: it.scope,
            action: it.action,
            sinkhole: self.sinkholes.get(it.sinkhole as usize).copied(),
        }
    }

    /// Normalise `raw` (the name part of `token`, the text as written) and record it; the error is
    /// the whole `file:line: entry: …` refusal, quoting `token`.
    fn push(
        &mut self,
        raw: &str,
        token: &str,
        line: u32,
        scope: Scope,
        action: Action,
        sinkhole: Option<IpAddr>,
    ) -> Result<(), PolicyError> {
        let at = self.names.len();
        name::normalise_into(raw, &mut self.names)
            .map_err(|e| self.error(line, format!("{} {e}", quote(token))))?;
        // Offsets fit: files are at most MAX_FILE_BYTES (128 MiB) and names at most 253 bytes.
        let name_at = u32::try_from(at).map_err(|_| self.too_big(line))?;
        let name_len = u8::try_from(self.names.len() - at).map_err(|_| self.too_big(line))?;
        if scope != Scope::Exact && action == Action::Block && !self.names[at..].contains('.') {
            let tld = self.names[at..].to_string();
            self.tld_notes
                .note(&mut self.warnings, &self.path, line, || {
                    format!(
                        "{} blocks every name under the top-level domain .{tld}",
                        quote(token)
                    )
                });
        }
        let sinkhole = match sinkhole {
            Some(addr) => {
                self.sinkholes.push(addr);
                u32::try_from(self.sinkholes.len() - 1).map_err(|_| self.too_big(line))?
            }
            None => NO_SINKHOLE,
        };
        self.items.push(Item {
            name_at,
            line,
            sinkhole,
            name_len,
            scope,
            action,
        });
        Ok(())
    }

    /// Count (and, within the budget, warn about) a well-formed record that is skipped.
    fn unsupported(&mut self, line: u32, message: impl FnOnce() -> String) {
        self.unsupported += 1;
        self.unsupported_notes
            .note(&mut self.warnings, &self.path, line, message);
    }

    /// `file:line: entry: message`.
    fn error(&self, line: u32, message: String) -> PolicyError {
        PolicyError::new(ErrorKind::Invalid, &self.path, line, "entry", message)
    }

    /// `file:line: syntax: message` (RPZ structure: parentheses, quotes, directives).
    fn syntax(&self, line: u32, message: String) -> PolicyError {
        PolicyError::new(ErrorKind::Syntax, &self.path, line, "syntax", message)
    }

    fn too_big(&self, line: u32) -> PolicyError {
        PolicyError::new(
            ErrorKind::Capacity,
            &self.path,
            line,
            "entry",
            "the feed holds more names than one feed may (4 GiB of names)",
        )
    }

    fn finish(&mut self) {
        let unsupported = self.unsupported_notes;
        unsupported.finish(
            &mut self.warnings,
            &self.path,
            "records the data path cannot enforce were skipped",
        );
        let tld = self.tld_notes;
        tld.finish(
            &mut self.warnings,
            &self.path,
            "entries block a whole top-level domain",
        );
    }
}

/// Warnings of one kind reported one by one up to a limit, the rest counted in one summary.
#[derive(Clone, Copy, Debug, Default)]
struct Capped {
    count: u64,
}

/// Warnings of one kind reported one by one per feed (as `feeds` does for host bits).
const MAX_WARNINGS_PER_KIND: u64 = 5;

impl Capped {
    fn note(
        &mut self,
        warnings: &mut Vec<Warning>,
        path: &Path,
        line: u32,
        message: impl FnOnce() -> String,
    ) {
        self.count += 1;
        if self.count <= MAX_WARNINGS_PER_KIND {
            warnings.push(Warning {
                path: path.to_path_buf(),
                line,
                field: "entry".into(),
                message: message(),
            });
        }
    }

    fn finish(self, warnings: &mut Vec<Warning>, path: &Path, what: &str) {
        if self.count > MAX_WARNINGS_PER_KIND {
            warnings.push(Warning {
                path: path.to_path_buf(),
                line: 1,
                field: "entry".into(),
                message: format!("{} more {what}", self.count - MAX_WARNINGS_PER_KIND),
            });
        }
    }
}

/// Read and parse a domain feed. `bare` is the scope of hosts/list names without an explicit `*.`
/// (normally [`Scope::Subtree`]; [`Scope::Exact`] when the policy says exact names only); RPZ zones
/// say it themselves and ignore it.
pub fn load_domains(
    path: &Path,
    format: DomainFormat,
    bare: Scope,
) -> Result<DomainEntries, PolicyError> {
    let text = crate::error::read_file(path, path, 1, "file")?;
    parse_domains(&text, path, format, bare)
}

/// Parse domain-feed text; `path` is only used in messages.
pub fn parse_domains(
    text: &str,
    path: &Path,
    format: DomainFormat,
    bare: Scope,
) -> Result<DomainEntries, PolicyError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = DomainEntries::new(path, format);
    // Typical lines are 20-40 bytes; one reservation instead of repeated regrowth on big feeds.
    out.items.reserve(text.len() / 32);
    // Names are most of a line; reserving the text length avoids regrowing (and the copy peak).
    out.names.reserve(text.len());
    match format {
        DomainFormat::Hosts => hosts::parse(text, bare, &mut out)?,
        DomainFormat::List => list::parse(text, bare, &mut out)?,
        DomainFormat::Rpz => rpz::parse(text, &mut out)?,
    }
    out.finish();
    out.items.shrink_to_fit();
    out.names.shrink_to_fit();
    Ok(out)
}

/// 1-based line number of the `i`-th line.
fn line_no(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

/// `*.name` → (`name`, `Subtree`); anything else as it is with the `bare` scope.
fn explicit_subtree(token: &str, bare: Scope) -> (&str, Scope) {
    match token.strip_prefix("*.") {
        Some(rest) => (rest, Scope::Subtree),
        None => (token, bare),
    }
}
