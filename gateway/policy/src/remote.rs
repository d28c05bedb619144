//! Remote feeds: `[[feed]] url = "https://…"` and the settings of their fetcher.
//!
//! ```toml
//! [[feed]]
//! name = "soc-indicators"
//! url = "https://feeds.soc.example.vn/v1/indicators.json"  # https only; exclusive with `path`
//! format = "json"
//! refresh_secs = 3600        # default 3600, at least 60
//! max_bytes = 67108864       # default 64 MiB, at most 128 MiB; a bigger download is refused
//! ca = "certs/soc-ca.pem"    # optional, beside the policy; default: the Mozilla roots built in
//! min_entries = 1            # default 1; a download with fewer entries is malformed
//! timeout_secs = 60          # default 60, 5 to 600: the whole download (connect: at most 10 s)
//! ```
//!
//! The policy layer only validates these settings; gatewayd fetches (gateway/daemon/src/feeds/).
//! What a remote feed contributes to an image is its last good copy, which the daemon keeps in a
//! directory it hands to [`crate::compile::compile_with_store`]; without one the feed contributes
//! nothing (with a warning), so a policy never waits for, nor fails because of, the network.
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::error::{PolicyError, SourceText};
use crate::feeds::FeedFormat;

pub const DEFAULT_REFRESH_SECS: u64 = 3600;
/// Refreshing faster than this hammers the vendor and gains nothing for blocklists.
pub const MIN_REFRESH_SECS: u64 = 60;
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Hard cap: the download is held in memory and parsed whole (a 1M-entry feed is about 16 MiB);
/// the compiler reads no bigger file either.
pub const MAX_BYTES_CAP: u64 = crate::error::MAX_FILE_BYTES;
pub const DEFAULT_MIN_ENTRIES: u64 = 1;
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// A validated `https://host[:port]/path` URL, split for the fetcher.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpsUrl {
    /// As written.
    pub url: String,
    /// Host name or IP address (IPv6 without brackets): the TLS server name and what to resolve.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpsUrl {
    /// The `Host` header value (brackets around IPv6, port when not 443).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Parses an `https://` URL. Refuses other schemes, user info (credentials do not belong in a
/// policy that is kept in history and exported), fragments and anything that is not printable ASCII.
pub fn parse_https_url(url: &str) -> Result<HttpsUrl, String> {
    if url.is_empty() || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{url:?} is not a URL (empty, spaces or non-ASCII characters)"
        ));
    }
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{url:?}: scheme {scheme:?} refused; only https feeds are fetched"
            ));
        }
        None => return Err(format!("{url:?} is not a URL; expected https://host/path")),
    };
    if url.contains('#') {
        return Err(format!("{url:?}: a feed URL has no fragment (#…)"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(format!(
            "{url:?}: credentials in the URL are refused (the policy is kept in history and exported)"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed '[' in the host"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{url:?}: {addr:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{url:?}: unexpected {p:?} after the host"))?,
            ),
        };
        (addr.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if !valid_host {
        return Err(format!("{url:?}: {host:?} is not a host name or address"));
    }
    let port = match port {
        None => 443,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{url:?}: {p:?} is not a port (1-65535)")),
        },
    };
    Ok(HttpsUrl {
        url: url.to_owned(),
        host: host.to_ascii_lowercase(),
        port,
        path,
    })
}

/// What the fetcher needs to know about one remote feed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteFeed {
    pub name: String,
    pub format: FeedFormat,
    pub url: HttpsUrl,
    pub refresh: Duration,
    pub max_bytes: u64,
    /// Resolved against the policy's directory; `None`: the built-in Mozilla roots.
    pub ca: Option<PathBuf>,
    pub min_entries: u64,
    /// The whole download, from connect to the last byte.
    pub timeout: Duration,
}

impl RemoteFeed {
    /// File name of the last good copy in the daemon's store: `<name>.<format>`.
    pub fn file_name(&self) -> String {
        store_file_name(&self.name, self.format)
    }
}

/// `<name>.<format>` (feed names are restricted to `[A-Za-z0-9._-]`, see `profile::check_name`).
pub fn store_file_name(name: &str, format: FeedFormat) -> String {
    format!("{name}.{}", format.as_str())
}

/// The last good copy of `feed` in `store`, if there is one.
pub fn last_good(store: &Path, name: &str, format: FeedFormat) -> Option<PathBuf> {
    let p = store.join(store_file_name(name, format));
    p.is_file().then_some(p)
}

/// The remote settings of a `[[feed]]` table as read.
pub(crate) struct RawRemote {
    pub url: Option<Spanned<String>>,
    pub refresh_secs: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<i64>>,
    pub ca: Option<Spanned<String>>,
    pub min_entries: Option<Spanned<i64>>,
    pub timeout_secs: Option<Spanned<i64>>,
}

/// A local feed (`path`) takes none of the remote settings: a stray `refresh_secs` means the
/// admin thinks the feed is fetched, and it is not.
pub(crate) fn no_remote_settings(src: &SourceText<'_>, raw: &RawRemote) -> Result<(), PolicyError> {
    let stray = [
        raw.refresh_secs
            .as_ref()
            .map(|s| ("feed.refresh_secs", s.span())),
        raw.max_bytes.as_ref().map(|s| ("feed.max_bytes", s.span())),
        raw.ca.as_ref().map(|s| ("feed.ca", s.span())),
        raw.min_entries
            .as_ref()
            .map(|s| ("feed.min_entries", s.span())),
    ];
    match stray.into_iter().flatten().next() {
        Some((field, span)) => Err(src.invalid(
            &span,
            field,
            "only a remote feed (`url = \"https://…\"`) takes this setting",
        )),
        None => Ok(()),
    }
}

/// Validates the remote settings of feed `name`; returns the feed and the line of its `url`.
pub(crate) fn validate(
    src: &SourceText<'_>,
    name: &str,
    format: FeedFormat,
    raw: RawRemote,
) -> Result<(RemoteFeed, u32), PolicyError> {
    let Some(url) = raw.url else {
        return Err(PolicyError::invalid(src.path, 1, "feed.url", "missing"));
    };
    let line = src.line_of_span(&url.span());
    let parsed =
        parse_https_url(url.get_ref()).map_err(|m| src.invalid(&url.span(), "feed.url", m))?;
    let int = |v: &Option<Spanned<i64>>, field: &str, default: u64, lo: u64, hi: u64| match v {
        None => Ok(default),
        Some(s) => match u64::try_from(*s.get_ref()) {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(src.invalid(
                &s.span(),
                field,
                format!("{} is out of range; expected {lo} to {hi}", s.get_ref()),
            )),
        },
    };
    let refresh = int(
        &raw.refresh_secs,
        "feed.refresh_secs",
        DEFAULT_REFRESH_SECS,
        MIN_REFRESH_SECS,
        7 * 86_400,
    )?;
    let max_bytes = int(
        &raw.max_bytes,
        "feed.max_bytes",
        DEFAULT_MAX_BYTES,
        1,
        MAX_BYTES_CAP,
    )?;
    let min_entries = int(
        &raw.min_entries,
        "feed.min_entries",
        DEFAULT_MIN_ENTRIES,
        1,
        u64::from(u32::MAX),
    )?;
    let timeout = int(
        &raw.timeout_secs,
        "feed.timeout_secs",
        DEFAULT_TIMEOUT_SECS,
        5,
        600,
    )?;
    let base = src.path.parent().unwrap_or(Path::new(""));
    let ca = match raw.ca {
        None => None,
        Some(ca) => {
            // Same rule as feed paths: beside the policy, so a policy received over the API
            // cannot point the fetcher at arbitrary files.
            let rel = Path::new(ca.get_ref());
            let contained = !ca.get_ref().is_empty()
                && rel
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !contained {
                return Err(src.invalid(
                    &ca.span(),
                    "feed.ca",
                    format!("{:?} must be a relative path inside the policy's directory (no \"..\", not absolute)", ca.get_ref()),
                ));
            }
            let path = base.join(rel);
            if !path.is_file() {
                return Err(src.invalid(
                    &ca.span(),
                    "feed.ca",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            Some(path)
        }
    };
    Ok((
        RemoteFeed {
            name: name.to_owned(),
            format,
            url: parsed,
            refresh: Duration::from_secs(refresh),
            max_bytes,
            ca,
            min_entries,
            timeout: Duration::from_secs(timeout),
        },
        line,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_https_url("https://feeds.example.vn/v1/list.txt?x=1").expect("ok");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("feeds.example.vn", 443, "/v1/list.txt?x=1")
        );
        assert_eq!(u.authority(), "feeds.example.vn");
        let u = parse_https_url("https://127.0.0.1:8443").expect("ok");
        assert_eq!((u.port, u.path.as_str()), (8443, "/"));
        assert_eq!(u.authority(), "127.0.0.1:8443");
        let u = parse_https_url("https://[fd00::1]:9000/a").expect("ok");
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 9000));
        assert_eq!(u.authority(), "[fd00::1]:9000");
        let u = parse_https_url("HTTPS://Example.COM?q").expect("ok");
        assert_eq!((u.host.as_str(), u.path.as_str()), ("example.com", "/?q"));
    }

    #[test]
    fn refused_urls_say_why() {
        for (url, why) in [
            ("http://x.example/a", "only https"),
            ("ftp://x.example/a", "only https"),
            ("x.example/a", "not a URL"),
            ("https://user:pw@x.example/a", "credentials"),
            ("https://x.example/a#frag", "fragment"),
            ("https://x.example:0/", "not a port"),
            ("https://x.example:70000/", "not a port"),
            ("https:///a", "not a host"),
            ("https://[zz]/", "not an IPv6"),
            ("https://x .example/", "spaces"),
            ("https://x_y.example/", "not a host"),
        ] {
            let e = parse_https_url(url).expect_err(url);
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
