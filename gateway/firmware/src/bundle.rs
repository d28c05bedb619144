//! The signed update bundle (`*.gwb`).
//!
//! ```text
//! offset  size  field (integers little-endian)
//! 0       8     magic "GWFWBNDL"
//! 8       2     format version (1)
//! 10      4     header length H: bytes 0..H are the signed header
//! 14      1+n   arch      (u8 length, ASCII: "x86_64" | "aarch64")
//!         1+n   profile   (u8 length, [A-Za-z0-9._-], the hardware profile name)
//!         8     version   (u64, monotonic: an update must be newer than the running firmware)
//!         8     created   (u64, unix seconds, informational)
//!         2+n   cmdline   (u16 length, printable ASCII: kernel options besides root= and gateway.slot=)
//!         1     part count (3)
//!         41*k  parts: kind u8 (1 rootfs, 2 kernel, 3 initrd), size u64, sha256 [32]
//!         32    payload sha256 (over all parts, in order)
//! H       64    ed25519 signature over bytes 0..H (the header, which carries every digest)
//! H+64    ...   payload: the parts, in header order, nothing after them
//! ```
//!
//! The rootfs part is the root filesystem image of a slot (squashfs); kernel and initrd are the files
//! systemd-boot loads from the ESP for that slot. [`verify`] checks, in this order: magic and format,
//! the signature (before any field is trusted), arch, profile, version, then every part's digest while
//! streaming the payload, and that nothing follows it.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::encode::hex;

pub const MAGIC: [u8; 8] = *b"GWFWBNDL";
pub const FORMAT_VERSION: u16 = 1;
pub const SIGNATURE_LEN: usize = 64;
/// Bound on the header so a hostile file cannot make us allocate much before the signature check.
pub const MAX_HEADER_LEN: u32 = 16 * 1024;
const FIXED_PREFIX_LEN: usize = 14;
const PART_RECORD_LEN: usize = 1 + 8 + 32;
const MAX_CMDLINE_LEN: usize = 2048;

/// What a part of the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartKind {
    Rootfs,
    Kernel,
    Initrd,
}

impl PartKind {
    pub const ALL: [PartKind; 3] = [PartKind::Rootfs, PartKind::Kernel, PartKind::Initrd];

    fn code(self) -> u8 {
        match self {
            PartKind::Rootfs => 1,
            PartKind::Kernel => 2,
            PartKind::Initrd => 3,
        }
    }

    fn from_code(code: u8) -> Option<PartKind> {
        match code {
            1 => Some(PartKind::Rootfs),
            2 => Some(PartKind::Kernel),
            3 => Some(PartKind::Initrd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Rootfs => "rootfs",
            PartKind::Kernel => "kernel",
            PartKind::Initrd => "initrd",
        }
    }
}

impl std::fmt::Display for PartKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub kind: PartKind,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// The signed header of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub arch: String,
    pub profile: String,
    pub version: u64,
    pub created: u64,
    pub cmdline: String,
    pub parts: Vec<Part>,
    pub payload_sha256: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("not a gateway update bundle (bad magic)")]
    BadMagic,
    #[error(
        "bundle format version {0} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedFormat(u16),
    #[error("bundle header length {0} is out of range")]
    HeaderLength(u32),
    #[error("bundle is truncated: {0}")]
    Truncated(&'static str),
    #[error("bundle header is malformed: {0}")]
    Malformed(&'static str),
    #[error("bundle signature is not valid for the trusted update key: refusing the bundle")]
    BadSignature(#[source] ed25519_dalek::SignatureError),
    #[error("bundle is for architecture {bundle}, this box is {expected}: refusing the bundle")]
    WrongArch { bundle: String, expected: String },
    #[error("bundle is for hardware profile {bundle}, this box is {expected}: refusing the bundle")]
    WrongProfile { bundle: String, expected: String },
    #[error(
        "bundle version {bundle} is not newer than the installed firmware {installed}: refusing the bundle"
    )]
    NotNewer { bundle: u64, installed: u64 },
    #[error(
        "bundle {part} digest mismatch (expected {expected}, got {actual}): the payload is corrupt or was changed"
    )]
    DigestMismatch {
        part: PartKind,
        expected: String,
        actual: String,
    },
    #[error("bundle has {0} bytes after the payload")]
    TrailingData(u64),
    #[error("bundle has no {0} part")]
    MissingPart(PartKind),
    #[error("invalid bundle field: {0}")]
    InvalidField(&'static str),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

fn valid_profile(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_cmdline(c: &str) -> bool {
    // it is written into a loader entry's `options` line: no newline or control character may smuggle
    // another line in
    c.len() <= MAX_CMDLINE_LEN && c.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl Header {
    /// Checks every field against the format's rules (used by both encode and decode).
    pub fn validate(&self) -> Result<(), BundleError> {
        if !crate::ARCHES.contains(&self.arch.as_str()) {
            return Err(BundleError::InvalidField("arch is not x86_64 or aarch64"));
        }
        if !valid_profile(&self.profile) {
            return Err(BundleError::InvalidField(
                "profile must be 1-64 characters of [A-Za-z0-9._-]",
            ));
        }
        if !valid_cmdline(&self.cmdline) {
            return Err(BundleError::InvalidField(
                "cmdline must be at most 2048 printable ASCII characters",
            ));
        }
        for kind in PartKind::ALL {
            match self.parts.iter().filter(|p| p.kind == kind).count() {
                0 => return Err(BundleError::MissingPart(kind)),
                1 => {}
                _ => return Err(BundleError::InvalidField("a part kind appears twice")),
            }
        }
        if self.parts.len() != PartKind::ALL.len() {
            return Err(BundleError::InvalidField("unexpected parts"));
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        self.validate()?;
        let mut b = Vec::with_capacity(256 + self.cmdline.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&[0; 4]); // header length, patched below
        for s in [&self.arch, &self.profile] {
            let len =
                u8::try_from(s.len()).map_err(|_| BundleError::InvalidField("string too long"))?;
            b.push(len);
            b.extend_from_slice(s.as_bytes());
        }
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.created.to_le_bytes());
        let len = u16::try_from(self.cmdline.len())
            .map_err(|_| BundleError::InvalidField("cmdline too long"))?;
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(self.cmdline.as_bytes());
        let count = u8::try_from(self.parts.len())
            .map_err(|_| BundleError::InvalidField("too many parts"))?;
        b.push(count);
        for p in &self.parts {
            b.push(p.kind.code());
            b.extend_from_slice(&p.size.to_le_bytes());
            b.extend_from_slice(&p.sha256);
        }
        b.extend_from_slice(&self.payload_sha256);
        let total =
            u32::try_from(b.len()).map_err(|_| BundleError::InvalidField("header too long"))?;
        if total > MAX_HEADER_LEN {
            return Err(BundleError::HeaderLength(total));
        }
        b[10..14].copy_from_slice(&total.to_le_bytes());
        Ok(b)
    }

    /// Parses exactly the header bytes `0..H` (already length-checked by the caller).
    pub fn decode(bytes: &[u8]) -> Result<Header, BundleError> {
        let mut c = Cursor { buf: bytes, pos: 0 };
        if c.take(8, "magic")? != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let format = c.u16("format version")?;
        if format != FORMAT_VERSION {
            return Err(BundleError::UnsupportedFormat(format));
        }
        let declared = c.u32("header length")?;
        if usize::try_from(declared).ok() != Some(bytes.len()) {
            return Err(BundleError::Malformed("header length does not match"));
        }
        let arch = c.string8("arch")?;
        let profile = c.string8("profile")?;
        let version = c.u64("version")?;
        let created = c.u64("created")?;
        let cmdline_len = usize::from(c.u16("cmdline length")?);
        let cmdline = c.utf8(cmdline_len, "cmdline")?;
        let count = c.u8("part count")?;
        let mut parts = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let kind = PartKind::from_code(c.u8("part kind")?)
                .ok_or(BundleError::Malformed("unknown part kind"))?;
            let size = c.u64("part size")?;
            let sha256 = c.array32("part digest")?;
            parts.push(Part { kind, size, sha256 });
        }
        let payload_sha256 = c.array32("payload digest")?;
        if c.pos != bytes.len() {
            return Err(BundleError::Malformed(
                "bytes left over after the payload digest",
            ));
        }
        let h = Header {
            arch,
            profile,
            version,
            created,
            cmdline,
            parts,
            payload_sha256,
        };
        h.validate()?;
        Ok(h)
    }

    /// Total payload length (sum of the parts), or an error if it overflows.
    pub fn payload_len(&self) -> Result<u64, BundleError> {
        self.parts
            .iter()
            .try_fold(0u64, |acc, p| acc.checked_add(p.size))
            .ok_or(BundleError::Malformed("payload length overflows"))
    }

    /// The part of `kind` and its offset from the start of the payload.
    pub fn part(&self, kind: PartKind) -> Result<(&Part, u64), BundleError> {
        let mut offset = 0u64;
        for p in &self.parts {
            if p.kind == kind {
                return Ok((p, offset));
            }
            offset = offset
                .checked_add(p.size)
                .ok_or(BundleError::Malformed("payload length overflows"))?;
        }
        Err(BundleError::MissingPart(kind))
    }
}

/// Bounds-checked reader over the header bytes: every read checks the remaining length first.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], BundleError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(BundleError::Malformed(what))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(BundleError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], BundleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, BundleError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, BundleError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, BundleError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, BundleError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn array32(&mut self, what: &'static str) -> Result<[u8; 32], BundleError> {
        self.array(what)
    }
    fn utf8(&mut self, n: usize, what: &'static str) -> Result<String, BundleError> {
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| BundleError::Malformed(what))
    }
    fn string8(&mut self, what: &'static str) -> Result<String, BundleError> {
        let n = usize::from(self.u8(what)?);
        self.utf8(n, what)
    }
}

/// The inputs of [`create`].
#[derive(Debug, Clone)]
pub struct CreateSpec<'a> {
    pub arch: &'a str,
    pub profile: &'a str,
    pub version: u64,
    pub created: u64,
    pub cmdline: &'a str,
    pub rootfs: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
}

/// Streams `r` into `w` (if any) and returns the sha256 and byte count.
fn hash_copy(mut r: impl Read, mut w: Option<&mut dyn Write>) -> io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..got]);
        if let Some(w) = w.as_mut() {
            w.write_all(&buf[..got])?;
        }
        n += got as u64;
    }
    Ok((h.finalize().into(), n))
}

/// Builds and signs a bundle at `out` (written to `out.tmp`, then renamed).
pub fn create(spec: &CreateSpec<'_>, key: &SigningKey, out: &Path) -> Result<Header, BundleError> {
    let inputs = [
        (PartKind::Rootfs, spec.rootfs),
        (PartKind::Kernel, spec.kernel),
        (PartKind::Initrd, spec.initrd),
    ];
    let mut parts = Vec::new();
    let mut payload = Sha256::new();
    for (kind, path) in inputs {
        let f = File::open(path).map_err(io_err(path))?;
        let (sha256, size) = hash_copy(BufReader::new(f), None).map_err(io_err(path))?;
        parts.push(Part { kind, size, sha256 });
    }
    // the payload digest is over the concatenated parts; a second pass keeps memory flat
    for (_, path) in inputs {
        let f = File::open(path).map_err(io_err(path))?;
        let mut w = DigestWriter(&mut payload);
        hash_copy(BufReader::new(f), Some(&mut w)).map_err(io_err(path))?;
    }
    let header = Header {
        arch: spec.arch.to_owned(),
        profile: spec.profile.to_owned(),
        version: spec.version,
        created: spec.created,
        cmdline: spec.cmdline.to_owned(),
        parts,
        payload_sha256: payload.finalize().into(),
    };
    let bytes = header.encode()?;
    let signature = key.sign(&bytes);
    let mut tmp_name = out.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| -> io::Result<()> {
        let mut w = io::BufWriter::new(File::create(&tmp)?);
        w.write_all(&bytes)?;
        w.write_all(&signature.to_bytes())?;
        for (_, path) in inputs {
            io::copy(&mut File::open(path)?, &mut w)?;
        }
        w.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(BundleError::Io {
            path: out.to_owned(),
            source,
        });
    }
    // the inputs might have changed while we copied them: check the result like any other bundle
    let check = verify(
        out,
        &key.verifying_key(),
        &Expect {
            arch: spec.arch,
            profile: spec.profile,
            installed_version: None,
        },
    );
    if let Err(e) = check {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(header)
}

struct DigestWriter<'a>(&'a mut Sha256);

impl Write for DigestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the box expects of a bundle.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub arch: &'a str,
    pub profile: &'a str,
    /// The running firmware's version; the bundle must be strictly newer. `None` skips the check
    /// (building, or inspecting a bundle off the box).
    pub installed_version: Option<u64>,
}

/// A bundle whose signature, target and every digest have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub path: PathBuf,
    pub header: Header,
    /// Offset of the payload in the file.
    pub payload_offset: u64,
}

/// Reads and checks the signed header only (signature, arch, profile, version), not the payload.
fn read_header(
    file: &mut File,
    path: &Path,
    key: &VerifyingKey,
    expect: &Expect<'_>,
) -> Result<(Header, u64), BundleError> {
    let mut prefix = [0u8; FIXED_PREFIX_LEN];
    read_exact_or(file, &mut prefix, path, "header")?;
    if prefix[..8] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let format = u16::from_le_bytes([prefix[8], prefix[9]]);
    if format != FORMAT_VERSION {
        return Err(BundleError::UnsupportedFormat(format));
    }
    let len = u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]);
    let min = FIXED_PREFIX_LEN + 2 + 16 + 2 + 1 + 3 * PART_RECORD_LEN + 32;
    if len > MAX_HEADER_LEN || (len as usize) < min {
        return Err(BundleError::HeaderLength(len));
    }
    let mut header_bytes = vec![0u8; len as usize];
    header_bytes[..FIXED_PREFIX_LEN].copy_from_slice(&prefix);
    read_exact_or(file, &mut header_bytes[FIXED_PREFIX_LEN..], path, "header")?;
    let mut sig = [0u8; SIGNATURE_LEN];
    read_exact_or(file, &mut sig, path, "signature")?;
    // 1. the signature, before any field is believed
    key.verify(&header_bytes, &Signature::from_bytes(&sig))
        .map_err(BundleError::BadSignature)?;
    // 2. the (now authentic) fields
    let header = Header::decode(&header_bytes)?;
    if header.arch != expect.arch {
        return Err(BundleError::WrongArch {
            bundle: header.arch,
            expected: expect.arch.to_owned(),
        });
    }
    if header.profile != expect.profile {
        return Err(BundleError::WrongProfile {
            bundle: header.profile,
            expected: expect.profile.to_owned(),
        });
    }
    if let Some(installed) = expect.installed_version
        && header.version <= installed
    {
        return Err(BundleError::NotNewer {
            bundle: header.version,
            installed,
        });
    }
    Ok((header, u64::from(len) + SIGNATURE_LEN as u64))
}

fn read_exact_or(
    file: &mut File,
    buf: &mut [u8],
    path: &Path,
    what: &'static str,
) -> Result<(), BundleError> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => BundleError::Truncated(what),
        _ => BundleError::Io {
            path: path.to_owned(),
            source: e,
        },
    })
}

/// Verifies the whole bundle: signature, arch, profile, version, every part's digest, the payload digest,
/// and that nothing follows the payload. Nothing is written anywhere.
pub fn verify(
    path: &Path,
    key: &VerifyingKey,
    expect: &Expect<'_>,
) -> Result<VerifiedBundle, BundleError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let (header, payload_offset) = read_header(&mut file, path, key, expect)?;
    let mut payload = Sha256::new();
    let mut reader = BufReader::with_capacity(1 << 20, &mut file);
    for part in &header.parts {
        let mut w = DigestWriter(&mut payload);
        let (digest, n) =
            hash_copy((&mut reader).take(part.size), Some(&mut w)).map_err(io_err(path))?;
        if n != part.size {
            return Err(BundleError::Truncated("payload"));
        }
        if digest != part.sha256 {
            return Err(BundleError::DigestMismatch {
                part: part.kind,
                expected: hex(&part.sha256),
                actual: hex(&digest),
            });
        }
    }
    let digest: [u8; 32] = payload.finalize().into();
    if digest != header.payload_sha256 {
        return Err(BundleError::DigestMismatch {
            part: PartKind::Rootfs,
            expected: hex(&header.payload_sha256),
            actual: hex(&digest),
        });
    }
    let mut rest = [0u8; 1];
    let extra = reader.read(&mut rest).map_err(io_err(path))?;
    if extra != 0 {
        let end = file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
        let used = payload_offset + header.payload_len()?;
        return Err(BundleError::TrailingData(end.saturating_sub(used)));
    }
    Ok(VerifiedBundle {
        path: path.to_owned(),
        header,
        payload_offset,
    })
}

/// Reads the header WITHOUT checking anything but its structure: for `bundle info` only.
pub fn inspect_unverified(path: &Path) -> Result<Header, BundleError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut prefix = [0u8; FIXED_PREFIX_LEN];
    read_exact_or(&mut file, &mut prefix, path, "header")?;
    let len = u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]);
    if prefix[..8] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    if len > MAX_HEADER_LEN || (len as usize) < FIXED_PREFIX_LEN {
        return Err(BundleError::HeaderLength(len));
    }
    let mut bytes = vec![0u8; len as usize];
    bytes[..FIXED_PREFIX_LEN].copy_from_slice(&prefix);
    read_exact_or(&mut file, &mut bytes[FIXED_PREFIX_LEN..], path, "header")?;
    Header::decode(&bytes)
}

impl VerifiedBundle {
    /// Copies one part into `w`, hashing it again on the way: if the file changed since [`verify`], the
    /// copy fails with [`BundleError::DigestMismatch`] (the caller must then not activate what it wrote).
    pub fn copy_part(&self, kind: PartKind, w: &mut dyn Write) -> Result<u64, BundleError> {
        let (part, offset) = self.header.part(kind)?;
        let mut file = File::open(&self.path).map_err(io_err(&self.path))?;
        file.seek(SeekFrom::Start(self.payload_offset + offset))
            .map_err(io_err(&self.path))?;
        let (digest, n) = hash_copy(
            BufReader::with_capacity(1 << 20, file).take(part.size),
            Some(w),
        )
        .map_err(io_err(&self.path))?;
        if n != part.size {
            return Err(BundleError::Truncated("payload"));
        }
        if digest != part.sha256 {
            return Err(BundleError::DigestMismatch {
                part: kind,
                expected: hex(&part.sha256),
                actual: hex(&digest),
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keys;

    pub(crate) struct Fixture {
        pub dir: tempfile::TempDir,
        pub key: SigningKey,
    }

    impl Fixture {
        pub fn new() -> anyhow::Result<Fixture> {
            let dir = tempfile::tempdir()?;
            std::fs::write(dir.path().join("rootfs"), vec![0x5au8; 300_000])?;
            std::fs::write(dir.path().join("kernel"), b"MZ kernel image")?;
            std::fs::write(dir.path().join("initrd"), b"initrd bytes")?;
            Ok(Fixture {
                dir,
                key: keys::generate()?,
            })
        }

        pub fn bundle(
            &self,
            name: &str,
            arch: &str,
            profile: &str,
            version: u64,
        ) -> anyhow::Result<PathBuf> {
            let d = self.dir.path();
            let out = d.join(name);
            create(
                &CreateSpec {
                    arch,
                    profile,
                    version,
                    created: 1_700_000_000,
                    cmdline: "rootfstype=squashfs ro console=ttyS0,115200",
                    rootfs: &d.join("rootfs"),
                    kernel: &d.join("kernel"),
                    initrd: &d.join("initrd"),
                },
                &self.key,
                &out,
            )?;
            Ok(out)
        }
    }

    fn expect(installed: Option<u64>) -> Expect<'static> {
        Expect {
            arch: "x86_64",
            profile: "qemu-x86_64",
            installed_version: installed,
        }
    }

    #[test]
    fn good_bundle_verifies() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let b = fx.bundle("ok.gwb", "x86_64", "qemu-x86_64", 7)?;
        let v = verify(&b, &fx.key.verifying_key(), &expect(Some(6)))?;
        assert_eq!(v.header.version, 7);
        assert_eq!(v.header.part(PartKind::Rootfs)?.0.size, 300_000);
        assert_eq!(inspect_unverified(&b)?, v.header);
        let mut out = Vec::new();
        assert_eq!(v.copy_part(PartKind::Kernel, &mut out)?, 15);
        assert_eq!(out, b"MZ kernel image");
        Ok(())
    }

    #[test]
    fn another_key_is_refused() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let b = fx.bundle("ok.gwb", "x86_64", "qemu-x86_64", 7)?;
        let other = keys::generate()?;
        assert!(matches!(
            verify(&b, &other.verifying_key(), &expect(None)),
            Err(BundleError::BadSignature(_))
        ));
        Ok(())
    }

    #[test]
    fn a_changed_header_byte_breaks_the_signature() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let b = fx.bundle("ok.gwb", "x86_64", "qemu-x86_64", 7)?;
        let mut bytes = std::fs::read(&b)?;
        // the version field: bump it as an attacker replaying an old bundle as "newer" would
        let at = 14 + 1 + 6 + 1 + "qemu-x86_64".len();
        bytes[at] ^= 0x80;
        std::fs::write(&b, &bytes)?;
        assert!(matches!(
            verify(&b, &fx.key.verifying_key(), &expect(None)),
            Err(BundleError::BadSignature(_))
        ));
        Ok(())
    }

    #[test]
    fn a_changed_payload_byte_is_found() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let b = fx.bundle("ok.gwb", "x86_64", "qemu-x86_64", 7)?;
        let mut bytes = std::fs::read(&b)?;
        let n = bytes.len();
        bytes[n - 200_000] ^= 1; // inside the rootfs part
        std::fs::write(&b, &bytes)?;
        assert!(matches!(
            verify(&b, &fx.key.verifying_key(), &expect(None)),
            Err(BundleError::DigestMismatch {
                part: PartKind::Rootfs,
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn wrong_arch_profile_and_old_versions_are_refused() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let vk = fx.key.verifying_key();
        let arm = fx.bundle("arm.gwb", "aarch64", "qemu-x86_64", 7)?;
        assert!(matches!(
            verify(&arm, &vk, &expect(None)),
            Err(BundleError::WrongArch { .. })
        ));
        let other = fx.bundle("other.gwb", "x86_64", "minipc-i226", 7)?;
        assert!(matches!(
            verify(&other, &vk, &expect(None)),
            Err(BundleError::WrongProfile { .. })
        ));
        let b = fx.bundle("ok.gwb", "x86_64", "qemu-x86_64", 7)?;
        assert!(matches!(
            verify(&b, &vk, &expect(Some(7))),
            Err(BundleError::NotNewer {
                bundle: 7,
                installed: 7
            })
        ));
        assert!(matches!(
            verify(&b, &vk, &expect(Some(8))),
            Err(BundleError::NotNewer { .. })
        ));
        Ok(())
    }

    #[test]
    fn truncation_trailing_data_and_garbage_are_refused() -> anyhow::Result<()> {
        let fx = Fixture::new()?;
        let vk = fx.key.verifying_key();
        let b = fx.bundle("ok.gwb", "x86_64", "qemu-x86_64", 7)?;
        let bytes = std::fs::read(&b)?;
        let t = fx.dir.path().join("t.gwb");
        std::fs::write(&t, &bytes[..bytes.len() - 1])?;
        assert!(matches!(
            verify(&t, &vk, &expect(None)),
            Err(BundleError::Truncated(_))
        ));
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"xyz");
        std::fs::write(&t, &longer)?;
        assert!(matches!(
            verify(&t, &vk, &expect(None)),
            Err(BundleError::TrailingData(3))
        ));
        std::fs::write(&t, b"not a bundle at all, just text")?;
        assert!(matches!(
            verify(&t, &vk, &expect(None)),
            Err(BundleError::BadMagic)
        ));
        let mut huge = bytes[..14].to_vec();
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&t, &huge)?;
        assert!(matches!(
            verify(&t, &vk, &expect(None)),
            Err(BundleError::HeaderLength(_))
        ));
        let mut fmt = bytes.clone();
        fmt[8] = 9;
        std::fs::write(&t, &fmt)?;
        assert!(matches!(
            verify(&t, &vk, &expect(None)),
            Err(BundleError::UnsupportedFormat(9))
        ));
        Ok(())
    }

    #[test]
    fn header_roundtrip_and_field_rules() -> anyhow::Result<()> {
        let parts = PartKind::ALL
            .iter()
            .map(|&kind| Part {
                kind,
                size: 3,
                sha256: [7; 32],
            })
            .collect();
        let h = Header {
            arch: "aarch64".into(),
            profile: "board-2p".into(),
            version: u64::MAX,
            created: 1,
            cmdline: "console=ttyAMA0".into(),
            parts,
            payload_sha256: [1; 32],
        };
        assert_eq!(Header::decode(&h.encode()?)?, h);
        let mut bad = h.clone();
        bad.cmdline = "quiet\noptions init=/bin/sh".into();
        assert!(matches!(bad.encode(), Err(BundleError::InvalidField(_))));
        let mut bad = h.clone();
        bad.profile = "../etc".into();
        assert!(matches!(bad.encode(), Err(BundleError::InvalidField(_))));
        let mut bad = h.clone();
        bad.parts.pop();
        assert!(matches!(
            bad.encode(),
            Err(BundleError::MissingPart(PartKind::Initrd))
        ));
        // every truncation of a valid header is an error, never a panic
        let bytes = h.encode()?;
        for n in 0..bytes.len() {
            assert!(Header::decode(&bytes[..n]).is_err());
        }
        Ok(())
    }
}
