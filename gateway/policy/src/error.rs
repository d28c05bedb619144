//! The one error type of the policy layer, and warnings.
//!
//! Every problem an admin can cause is reported as `path:line: field: message`, so it can be fixed
//! without reading code: the file (policy, feed or hardware profile), the 1-based line, the field in the
//! file's own terms (`shared_system.allow.ports`, `entry`, `port.pci`) and what is wrong. A refused
//! policy leaves the running one in force; the caller decides what to do with the error.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What class of problem an error is, for callers that react differently (e.g. retry on I/O).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read.
    Io,
    /// The file is not well-formed TOML/JSON or does not fit the schema.
    Syntax,
    /// Well-formed but semantically wrong (bad CIDR, unknown port, overlap, …).
    Invalid,
    /// The compiled policy would not fit the data-path maps.
    Capacity,
}

/// A refused policy, feed or profile: always names file, line (1-based) and field.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {field}: {message}", path.display())]
pub struct PolicyError {
    pub kind: ErrorKind,
    pub path: PathBuf,
    pub line: u32,
    pub field: String,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl PolicyError {
    pub fn new(
        kind: ErrorKind,
        path: &Path,
        line: u32,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            kind,
            path: path.to_path_buf(),
            line: line.max(1),
            field: field.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for the common case: a semantic error.
    pub fn invalid(
        path: &Path,
        line: u32,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Invalid, path, line, field, message)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Something the compiler accepted but an admin should look at (a feed entry normalised, a blocklist
/// entry covering the office's own network, …). Same `path:line: field: message` shape as errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub path: PathBuf,
    pub line: u32,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// A text file with a line index, so byte spans (from TOML/JSON parsers, or slices of the text) map
/// to 1-based line numbers. The index is built on first use: line-oriented feed parsers count lines
/// themselves and never need it.
pub(crate) struct SourceText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    /// Byte offset of the start of every line.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> SourceText<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        SourceText {
            path,
            text,
            line_starts: std::cell::OnceCell::new(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> u32 {
        let starts = self.line_starts.get_or_init(|| {
            let mut v = vec![0];
            v.extend(
                self.text
                    .bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            );
            v
        });
        let idx = starts.partition_point(|&s| s <= offset);
        u32::try_from(idx.max(1)).unwrap_or(u32::MAX)
    }

    pub fn line_of_span(&self, span: &Range<usize>) -> u32 {
        self.line_of(span.start)
    }

    pub fn invalid(
        &self,
        span: &Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError::invalid(self.path, self.line_of_span(span), field, message)
    }
}

/// Largest file the policy layer reads. The biggest legitimate input is a feed filling the
/// blocklist maps (~3 million entries, ~20 bytes a line); anything larger is a wrong file, and
/// reading it whole could exhaust the box's memory.
pub const MAX_FILE_BYTES: u64 = 128 << 20;

/// Read a file handed to the policy layer; the error names `line`/`field` of whoever named the file
/// (line 1, field `file` for a top-level file).
pub(crate) fn read_file(
    file: &Path,
    named_in: &Path,
    line: u32,
    field: &str,
) -> Result<String, PolicyError> {
    use std::io::Read;
    let io_err = |e: std::io::Error| {
        PolicyError::new(
            ErrorKind::Io,
            named_in,
            line,
            field,
            format!("cannot read {}: {e}", file.display()),
        )
        .with_source(e)
    };
    let f = std::fs::File::open(file).map_err(io_err)?;
    let mut text = String::new();
    // `take` bounds the read even if the file grows while we read it.
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(PolicyError::new(
            ErrorKind::Capacity,
            named_in,
            line,
            field,
            format!(
                "{} is larger than {} MiB; refusing to read it",
                file.display(),
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    // Editors on Windows save UTF-8 with a byte-order mark; it is not part of the first line.
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// Map a TOML schema/syntax error to a `PolicyError` with the key path as field
/// (`shared_system.allow.protocol`; indices and serde_spanned internals stripped).
pub(crate) fn toml_error(
    src: &SourceText<'_>,
    err: serde_path_to_error::Error<toml::de::Error>,
) -> PolicyError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let line = inner.span().map_or(1, |s| src.line_of(s.start));
    let mut field: String = path
        .split('.')
        .filter(|seg| !seg.is_empty() && !seg.starts_with("$__serde_spanned"))
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .collect::<Vec<_>>()
        .join(".");
    let mut message = inner.message().trim().replace('\n', "; ");
    // The TOML parser gives no reason for some cuts (`ports =` at the end of a file).
    if message.is_empty() {
        message = "not valid TOML here: a value, quote or bracket is missing or extra".into();
    }
    // serde reports a missing field at the table that lacks it: name the field itself.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        field = if field.is_empty() {
            missing.to_string()
        } else {
            format!("{field}.{missing}")
        };
    }
    if field.is_empty() {
        field = "syntax".to_string();
    }
    PolicyError::new(ErrorKind::Syntax, src.path, line, field, message).with_source(inner)
}

/// Quote untrusted text for a message: bounded length, control characters escaped, so a garbage
/// feed line cannot flood a log or forge lines in it.
pub(crate) fn quote(text: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::with_capacity(text.len().min(MAX) + 2);
    out.push('"');
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let s = SourceText::new(Path::new("x"), "a\nbb\n\nc");
        assert_eq!(s.line_of(0), 1);
        assert_eq!(s.line_of(1), 1); // the newline belongs to its line
        assert_eq!(s.line_of(2), 2);
        assert_eq!(s.line_of(5), 3);
        assert_eq!(s.line_of(6), 4);
    }

    #[test]
    fn display_shape() {
        let e = PolicyError::invalid(Path::new("p.toml"), 7, "zones.lan.ports", "no such port");
        assert_eq!(e.to_string(), "p.toml:7: zones.lan.ports: no such port");
    }

    #[test]
    fn quote_bounds_and_escapes() {
        assert_eq!(quote("a\tb"), "\"a\\tb\"");
        assert_eq!(quote(&"x".repeat(100)).chars().count(), 64 + 3);
    }
}
