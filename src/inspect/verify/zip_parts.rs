//! A package's ZIP as its signature sees it: the local records before the signature's
//! (`AXPC`), the central directory without the signature's record and with the end
//! records rewritten as if the signature were not there (`AXCD`), and the uncompressed
//! `[Content_Types].xml` (`AXCT`), `AppxBlockMap.xml` (`AXBM`) and
//! `AppxMetadata/CodeIntegrity.cat` (`AXCI`). Then every file against the block map, and a
//! bundle's payloads each as a package of its own.

use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};

use zip::ZipArchive;

use super::blockmap::{self, BlockMap};
use super::{Against, Code, Problem, Verification};
use crate::inspect::package::limits;
use crate::inspect::signature::{self, Vouched};
use crate::inspect::{Error, Result};

const SIGNATURE: &str = "AppxSignature.p7x";
const CONTENT_TYPES: &str = "[Content_Types].xml";
const CODE_INTEGRITY: &str = "AppxMetadata/CodeIntegrity.cat";
const BUNDLE_MANIFEST: &str = "AppxMetadata/AppxBundleManifest.xml";

/// Most bytes of a central directory read.
const CENTRAL_DIRECTORY_BYTES: u64 = 64 << 20;

/// One central directory record, where it is and what it says.
#[derive(Debug, Clone)]
struct Record {
    /// Its bytes' range in the central directory.
    range: std::ops::Range<usize>,
    /// The entry name as stored.
    name: String,
    /// Where its local header starts.
    local_offset: u64,
    /// Its compressed size, when the record (or its ZIP64 field) says it.
    compressed: Option<u64>,
}

/// The end of central directory records, as read.
#[derive(Debug, Clone)]
struct End {
    /// The classic record's fields that are written back as read when 0xFFFF/0xFFFFFFFF
    /// (ZIP64 placeholders), and its comment.
    entries_this_disk: u16,
    entries_total: u16,
    cd_size: u32,
    cd_offset: u32,
    comment: Vec<u8>,
    /// The ZIP64 end record (all of it after its signature) and locator, when there is one.
    zip64: Option<Zip64>,
}

#[derive(Debug, Clone)]
struct Zip64 {
    record_size: u64,
    versions: [u8; 4],
    disk: u32,
    cd_disk: u32,
    extensible: Vec<u8>,
    locator_disk: u32,
    locator_disks: u32,
}

impl Layout {
    /// The record of the part `name` (decoded, either separator, any ASCII case).
    fn position(&self, name: &str) -> Option<usize> {
        let key = blockmap::key(name);
        self.records
            .iter()
            .position(|r| blockmap::key(&decoded(&r.name)) == key)
    }
}

/// The ZIP's layout.
struct Layout {
    central: Vec<u8>,
    cd_offset: u64,
    records: Vec<Record>,
    end: End,
}

fn corrupt(at: impl std::fmt::Display, what: impl std::fmt::Display) -> Error {
    Error::new(at, what)
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

fn read_at<R: Read + Seek>(r: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads the end records and the central directory.
fn layout<R: Read + Seek>(r: &mut R) -> Result<Layout> {
    let io = |e: io::Error| corrupt("ZIP", format!("cannot be read: {e}"));
    let len = r.seek(SeekFrom::End(0)).map_err(io)?;
    let tail_len = len.min(22 + 65_535);
    let tail = read_at(r, len - tail_len, tail_len as usize).map_err(io)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| {
            tail[i..].starts_with(b"PK\x05\x06")
                && u16_at(&tail, i + 20).is_some_and(|c| i + 22 + usize::from(c) == tail.len())
        })
        .ok_or_else(|| {
            corrupt(
                "ZIP end of central directory",
                "not found: this is not a ZIP file, or it is truncated",
            )
        })?;
    let eocd_offset = len - tail_len + eocd as u64;
    let field16 = |i| u16_at(&tail, eocd + i).unwrap_or_default();
    let field32 = |i| u32_at(&tail, eocd + i).unwrap_or_default();
    let mut end = End {
        entries_this_disk: field16(8),
        entries_total: field16(10),
        cd_size: field32(12),
        cd_offset: field32(16),
        comment: tail[eocd + 22..].to_vec(),
        zip64: None,
    };
    let mut cd_size = u64::from(end.cd_size);
    let mut cd_offset = u64::from(end.cd_offset);
    if eocd_offset >= 20 {
        let locator = read_at(r, eocd_offset - 20, 20).map_err(io)?;
        if locator.starts_with(b"PK\x06\x07") {
            let at = u64_at(&locator, 8).unwrap_or_default();
            let head = read_at(r, at, 56).map_err(|_| {
                corrupt(
                    "ZIP64 end of central directory",
                    format!("the locator points at byte {at}, where there is none"),
                )
            })?;
            if !head.starts_with(b"PK\x06\x06") {
                return Err(corrupt(
                    "ZIP64 end of central directory",
                    format!("the locator points at byte {at}, where there is none"),
                ));
            }
            let record_size = u64_at(&head, 4).unwrap_or_default();
            let extensible_len = record_size.saturating_sub(44);
            if extensible_len > 65_535 || at + 12 + record_size > eocd_offset - 20 {
                return Err(corrupt(
                    "ZIP64 end of central directory",
                    format!("its size {record_size} runs past the locator"),
                ));
            }
            let extensible = read_at(r, at + 56, extensible_len as usize).map_err(io)?;
            cd_size = u64_at(&head, 40).unwrap_or_default();
            cd_offset = u64_at(&head, 48).unwrap_or_default();
            end.zip64 = Some(Zip64 {
                record_size,
                versions: head[12..16].try_into().unwrap_or_default(),
                disk: u32_at(&head, 16).unwrap_or_default(),
                cd_disk: u32_at(&head, 20).unwrap_or_default(),
                extensible,
                locator_disk: u32_at(&locator, 4).unwrap_or_default(),
                locator_disks: u32_at(&locator, 16).unwrap_or_default(),
            });
        }
    }
    if cd_size > CENTRAL_DIRECTORY_BYTES || cd_offset.saturating_add(cd_size) > eocd_offset {
        return Err(corrupt(
            "ZIP central directory",
            format!(
                "{cd_size} bytes at byte {cd_offset}: past the end records, or more than the {CENTRAL_DIRECTORY_BYTES} read"
            ),
        ));
    }
    let central = read_at(r, cd_offset, cd_size as usize).map_err(io)?;
    let records = records(&central)?;
    Ok(Layout {
        central,
        cd_offset,
        records,
        end,
    })
}

/// The central directory's records.
fn records(central: &[u8]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < central.len() {
        let at = || format!("ZIP central directory byte {i}");
        if !central[i..].starts_with(b"PK\x01\x02") || central.len() - i < 46 {
            return Err(corrupt(at(), "is not a central directory record"));
        }
        if out.len() >= limits::ENTRIES {
            return Err(corrupt(
                at(),
                format!(
                    "more than the {} entries a package may have",
                    limits::ENTRIES
                ),
            ));
        }
        let name_len = usize::from(u16_at(central, i + 28).unwrap_or_default());
        let extra_len = usize::from(u16_at(central, i + 30).unwrap_or_default());
        let comment_len = usize::from(u16_at(central, i + 32).unwrap_or_default());
        let end = i + 46 + name_len + extra_len + comment_len;
        if end > central.len() {
            return Err(corrupt(at(), "a record runs past the central directory"));
        }
        let name = String::from_utf8_lossy(&central[i + 46..i + 46 + name_len]).into_owned();
        let mut local_offset = u64::from(u32_at(central, i + 42).unwrap_or_default());
        if local_offset == 0xFFFF_FFFF {
            local_offset = zip64_field(central, i, name_len, extra_len, Zip64Field::Offset)
                .ok_or_else(|| {
                    corrupt(
                        at(),
                        "says its offset is in a ZIP64 extra field, and there is none",
                    )
                })?;
        }
        let compressed = match u32_at(central, i + 20).unwrap_or_default() {
            0xFFFF_FFFF => zip64_field(central, i, name_len, extra_len, Zip64Field::Compressed),
            c => Some(u64::from(c)),
        };
        out.push(Record {
            range: i..end,
            name,
            local_offset,
            compressed,
        });
        i = end;
    }
    Ok(out)
}

/// A field of a record's ZIP64 extra field: `Uncompressed`, `Compressed` or `Offset`,
/// each present only when its field in the record is the 0xFFFFFFFF placeholder.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Zip64Field {
    Uncompressed,
    Compressed,
    Offset,
}

fn zip64_field(
    central: &[u8],
    i: usize,
    name_len: usize,
    extra_len: usize,
    field: Zip64Field,
) -> Option<u64> {
    let extra = central.get(i + 46 + name_len..i + 46 + name_len + extra_len)?;
    let placeholders = [
        (
            Zip64Field::Uncompressed,
            u32_at(central, i + 24)? == 0xFFFF_FFFF,
        ),
        (
            Zip64Field::Compressed,
            u32_at(central, i + 20)? == 0xFFFF_FFFF,
        ),
        (Zip64Field::Offset, u32_at(central, i + 42)? == 0xFFFF_FFFF),
    ];
    let k = 8 * placeholders
        .iter()
        .filter(|(f, present)| *f < field && *present)
        .count();
    let mut j = 0;
    while j + 4 <= extra.len() {
        let id = u16_at(extra, j)?;
        let size = usize::from(u16_at(extra, j + 2)?);
        let body = extra.get(j + 4..j + 4 + size)?;
        if id == 1 {
            return u64_at(body, k);
        }
        j += 4 + size;
    }
    None
}

/// The central directory and end records as if the signature were not in the ZIP: its
/// record left out, the counts one less, the directory's size and offset those it would
/// then have (it starts where the signature's local record did), disk numbers zero.
fn central_without_signature(layout: &Layout, signature: usize) -> Vec<u8> {
    let sig = &layout.records[signature];
    let mut out = Vec::with_capacity(layout.central.len() + 100);
    for (k, record) in layout.records.iter().enumerate() {
        if k != signature {
            out.extend_from_slice(&layout.central[record.range.clone()]);
        }
    }
    let cd_size = out.len() as u64;
    let cd_offset = sig.local_offset;
    let entries = (layout.records.len() - 1) as u64;
    let end = &layout.end;
    if let Some(z) = &end.zip64 {
        out.extend_from_slice(b"PK\x06\x06");
        out.extend_from_slice(&z.record_size.to_le_bytes());
        out.extend_from_slice(&z.versions);
        out.extend_from_slice(&z.disk.to_le_bytes());
        out.extend_from_slice(&z.cd_disk.to_le_bytes());
        out.extend_from_slice(&entries.to_le_bytes());
        out.extend_from_slice(&entries.to_le_bytes());
        out.extend_from_slice(&cd_size.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&z.extensible);
        out.extend_from_slice(b"PK\x06\x07");
        out.extend_from_slice(&z.locator_disk.to_le_bytes());
        out.extend_from_slice(&(cd_offset + cd_size).to_le_bytes());
        out.extend_from_slice(&z.locator_disks.to_le_bytes());
    }
    let keep16 = |read: u16, value: u64| {
        if read == 0xFFFF { 0xFFFF } else { value as u16 }
    };
    let keep32 = |read: u32, value: u64| {
        if read == 0xFFFF_FFFF {
            0xFFFF_FFFF
        } else {
            value as u32
        }
    };
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&keep16(end.entries_this_disk, entries).to_le_bytes());
    out.extend_from_slice(&keep16(end.entries_total, entries).to_le_bytes());
    out.extend_from_slice(&keep32(end.cd_size, cd_size).to_le_bytes());
    out.extend_from_slice(&keep32(end.cd_offset, cd_offset).to_le_bytes());
    out.extend_from_slice(&(end.comment.len() as u16).to_le_bytes());
    out.extend_from_slice(&end.comment);
    out
}

/// The digest of the first `len` bytes of `r`.
fn digest_prefix<R: Read + Seek>(
    r: &mut R,
    len: u64,
    hash: super::DigestAlgorithm,
) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(0))?;
    let mut h = hash.hasher();
    let copied = io::copy(&mut r.take(len), &mut h)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file ends at byte {copied}"),
        ));
    }
    Ok(h.finish())
}

/// Verifies a package or bundle read from `source`. `Err` when it is not a readable ZIP;
/// everything Windows would refuse it for is in the [`Verification`]'s problems.
pub fn verify_zip<R: Read + Seek>(mut source: R, against: Against<'_>) -> Result<Verification> {
    let layout = layout(&mut source)?;
    let raw = Shared(std::rc::Rc::new(std::cell::RefCell::new(source)));
    let mut zip = ZipArchive::new(raw.clone()).map_err(|e| {
        corrupt(
            "ZIP central directory",
            format!("not a readable ZIP (MSIX/Appx packages are ZIP files): {e}"),
        )
    })?;
    if zip.len() != layout.records.len() {
        return Err(corrupt(
            "ZIP central directory",
            format!(
                "{} records, of which {} are distinct entries: a name is there twice",
                layout.records.len(),
                zip.len()
            ),
        ));
    }
    let mut v = Verification {
        signed: false,
        digest: None,
        files: 0,
        blocks: 0,
        parts: Vec::new(),
        root: None,
        problems: Vec::new(),
        payloads: Vec::new(),
    };
    let bundle = layout.position(BUNDLE_MANIFEST).is_some();
    let block_map_bytes = match layout.position(blockmap::NAME) {
        Some(k) => Some(entry_bytes(&mut zip, &layout, k, blockmap::limits::BYTES)?),
        None => None,
    };
    let Some(block_map_bytes) = block_map_bytes else {
        v.problems.push(Problem::new(
            Code::MissingRequiredFile,
            blockmap::NAME,
            "the package has no block map: it was not made by MakeAppx or a packaging tool, \
             and Windows does not install it",
        ));
        return Ok(v);
    };
    // The signature first: the digests of the parts it carries.
    match layout.position(SIGNATURE) {
        None => v.problems.push(super::unsigned()),
        Some(k) => {
            v.signed = true;
            let bytes = entry_bytes(&mut zip, &layout, k, limits::SIGNATURE_BYTES)?;
            match signature::verify_p7x(&bytes) {
                Err(p) => v.problems.push(p),
                Ok(vouched) => {
                    v.digest = Some(vouched.digest);
                    let (root, untrusted) = super::chain(&vouched, against);
                    v.root = Some(root);
                    v.problems.extend(untrusted);
                    if vouched.bundle != bundle {
                        v.problems.push(Problem::new(
                            Code::InvalidSipClientData,
                            SIGNATURE,
                            if bundle {
                                "is a package's signature, on a bundle"
                            } else {
                                "is a bundle's signature, on a package"
                            },
                        ));
                    }
                    check_parts(
                        &layout,
                        k,
                        &vouched,
                        &block_map_bytes,
                        (&mut zip, &raw),
                        &mut v,
                    )?;
                }
            }
        }
    }
    let map = match blockmap::parse(&block_map_bytes) {
        Ok(map) => map,
        Err(p) => {
            v.problems.push(p);
            return Ok(v);
        }
    };
    if let Some(d) = v.digest.filter(|d| *d != map.hash) {
        v.problems.push(Problem::new(
            Code::InvalidBlockMap,
            blockmap::NAME,
            format!(
                "its HashMethod is {}, the signature's digests are {d}: they must be the same",
                map.hash
            ),
        ));
    }
    check_blocks(&layout, &map, (&mut zip, &raw), &mut v)?;
    if bundle {
        verify_payloads(&layout, &map, &mut zip, &mut v, against)?;
    }
    Ok(v)
}

/// Compares the digests the signature carries with the package's parts.
fn check_parts<R: Read + Seek>(
    layout: &Layout,
    signature: usize,
    vouched: &Vouched,
    block_map: &[u8],
    (zip, raw): (&mut ZipArchive<Shared<R>>, &Shared<R>),
    v: &mut Verification,
) -> Result<()> {
    let hash = vouched.digest;
    let sig_offset = layout.records[signature].local_offset;
    if let Some(later) = layout.records.iter().find(|r| r.local_offset > sig_offset) {
        v.problems.push(Problem::new(
            Code::BadFormat,
            SIGNATURE,
            format!(
                "is not the last file of the ZIP ({:?} comes after it): the package was changed \
                 after signing",
                decoded(&later.name)
            ),
        ));
        return Ok(());
    }
    if let Some(p) = signature_record(layout, signature, raw) {
        v.problems.push(p);
    }
    let records = digest_prefix(&mut raw.clone(), sig_offset, hash)
        .map_err(|e| corrupt("ZIP local records", format!("cannot be read: {e}")))?;
    let central = hash.digest(&central_without_signature(layout, signature));
    let content_types = match layout.position(CONTENT_TYPES) {
        Some(k) => Some(hash.digest(&entry_bytes(zip, layout, k, limits::MANIFEST_BYTES)?)),
        None => {
            v.problems.push(Problem::new(
                Code::MissingRequiredFile,
                CONTENT_TYPES,
                "the package has none: it is not an OPC package",
            ));
            None
        }
    };
    let code_integrity = match layout.position(CODE_INTEGRITY) {
        Some(k) => Some(hash.digest(&entry_bytes(zip, layout, k, limits::MANIFEST_BYTES)?)),
        None => None,
    };
    let parts: [super::Part; 5] = [
        (
            b"AXPC",
            "ZIP local records before the signature",
            Some(records),
        ),
        (
            b"AXCD",
            "ZIP central directory without the signature",
            Some(central),
        ),
        (b"AXCT", CONTENT_TYPES, content_types),
        (b"AXBM", blockmap::NAME, Some(hash.digest(block_map))),
        (b"AXCI", CODE_INTEGRITY, code_integrity),
    ];
    super::compare_parts(vouched, parts, v);
    Ok(())
}

/// No digest covers the signature's own ZIP records, so they are held to agree: its
/// local header says what its central directory record says (version, flags, method,
/// time, CRC, sizes, name), and its data ends where the central directory starts (a data
/// descriptor may sit between).
fn signature_record<R: Read + Seek>(
    layout: &Layout,
    signature: usize,
    raw: &Shared<R>,
) -> Option<Problem> {
    let record = &layout.records[signature];
    let cd = &layout.central[record.range.clone()];
    let name_len = usize::from(u16_at(cd, 28)?);
    let offset = record.local_offset;
    let lfh = read_at(&mut raw.clone(), offset, 30 + name_len).ok();
    let at = format!("{SIGNATURE} local header (byte {offset})");
    let Some(lfh) = lfh.filter(|h| h.starts_with(b"PK\x03\x04")) else {
        return Some(Problem::new(
            Code::CorruptContent,
            at,
            "is not a ZIP local header",
        ));
    };
    let descriptor = u16_at(&lfh, 6).is_some_and(|f| f & 0x08 != 0);
    // (what, range in the local header, range in the central directory record)
    let fields: [(&str, std::ops::Range<usize>, std::ops::Range<usize>); 6] = [
        ("version needed, flags, method, time and date", 4..14, 6..16),
        ("CRC-32", 14..18, 16..20),
        ("compressed size", 18..22, 20..24),
        ("uncompressed size", 22..26, 24..28),
        ("name length", 26..28, 28..30),
        ("name", 30..30 + name_len, 46..46 + name_len),
    ];
    for (what, l, c) in fields {
        let (local, central) = (&lfh[l.clone()], &cd[c]);
        let deferred = descriptor && (14..26).contains(&l.start) && local.iter().all(|&b| b == 0);
        if local != central && !deferred {
            return Some(Problem::new(
                Code::CorruptContent,
                at,
                format!(
                    "its {what} ({}) differ from its central directory record's ({}): the \
                     signature's ZIP records were changed after signing",
                    super::hex(local),
                    super::hex(central)
                ),
            ));
        }
    }
    let header = 30 + u64::from(name_len as u16) + u64::from(u16_at(&lfh, 28)?);
    let data_end = record.compressed.map(|c| offset + header + c);
    // What may sit between the signature's data and the central directory: nothing, or
    // a data descriptor (12 or 16 bytes, 20 or 24 with ZIP64 sizes).
    let gap = data_end.and_then(|e| layout.cd_offset.checked_sub(e));
    let allowed: &[u64] = if descriptor { &[12, 16, 20, 24] } else { &[0] };
    if let (Some(end), Some(g)) = (data_end, gap.filter(|g| allowed.contains(g))) {
        // The data descriptor says the CRC and sizes the central directory record does.
        let bytes = read_at(&mut raw.clone(), end, g as usize).unwrap_or_default();
        let body = bytes.strip_prefix(b"PK\x07\x08").unwrap_or(&bytes);
        let wide = body.len() == 20;
        let crc = body.get(..4);
        let sizes: Option<(u64, u64)> = if wide {
            u64_at(body, 4).zip(u64_at(body, 12))
        } else {
            u32_at(body, 4)
                .map(u64::from)
                .zip(u32_at(body, 8).map(u64::from))
        };
        let cd_sizes = record
            .compressed
            .zip(u32_at(cd, 24).map(u64::from).filter(|&u| u != 0xFFFF_FFFF));
        let agrees = crc == Some(&cd[16..20])
            && (sizes == cd_sizes
                || (cd_sizes.is_none() && sizes.map(|s| s.0) == record.compressed));
        if g > 0 && !agrees {
            return Some(Problem::new(
                Code::CorruptContent,
                format!("{SIGNATURE} data descriptor (byte {end})"),
                format!(
                    "says CRC-32 and sizes {} that differ from its central directory record's: \
                     the signature's ZIP records were changed after signing",
                    super::hex(body)
                ),
            ));
        }
    }
    if u16_at(cd, 34) != Some(0) {
        return Some(Problem::new(
            Code::CorruptContent,
            format!("{SIGNATURE} central directory record"),
            "says the signature is on another disk: a package is one file",
        ));
    }
    if !gap.is_some_and(|g| allowed.contains(&g)) {
        return Some(Problem::new(
            Code::BadFormat,
            SIGNATURE,
            format!(
                "its local record (at byte {offset}) does not end where the central directory \
                 starts (byte {}): bytes were added to the package after signing",
                layout.cd_offset
            ),
        ));
    }
    None
}

/// Every file of the ZIP but the footprint files against the block map, and every file of
/// the block map in the ZIP.
fn check_blocks<R: Read + Seek>(
    layout: &Layout,
    map: &BlockMap,
    (zip, raw): (&mut ZipArchive<Shared<R>>, &Shared<R>),
    v: &mut Verification,
) -> Result<()> {
    let footprint = [CONTENT_TYPES, blockmap::NAME, SIGNATURE, CODE_INTEGRITY].map(blockmap::key);
    let mut listed: std::collections::HashMap<String, &blockmap::BlockMapFile> =
        map.files.iter().map(|f| (f.key(), f)).collect();
    for f in &map.files {
        if footprint.contains(&f.key()) {
            listed.remove(&f.key());
            v.problems.push(Problem::new(
                Code::InvalidBlockMap,
                format!("{} File {:?}", blockmap::NAME, f.name),
                "is a footprint file, which the block map never lists (the signature covers it)",
            ));
        }
    }
    for (index, record) in layout.records.iter().enumerate() {
        let name = decoded(&record.name);
        let key = blockmap::key(&name);
        if footprint.contains(&key) || name.ends_with('/') {
            continue;
        }
        let Some(file) = listed.remove(&key) else {
            v.problems.push(Problem::new(
                Code::InvalidBlockMap,
                &name,
                "is in the ZIP but not in the block map: it was added after the package was made",
            ));
            continue;
        };
        if let Some(expected) = file.lfh_size {
            let header = read_at(&mut raw.clone(), record.local_offset, 30)
                .map_err(|e| corrupt(&name, format!("its local header cannot be read: {e}")))?;
            let actual = u16_at(&header, 26)
                .zip(u16_at(&header, 28))
                .filter(|_| header.starts_with(b"PK\x03\x04"))
                .map(|(n, e)| 30 + u64::from(n) + u64::from(e));
            if actual != Some(expected) {
                v.problems.push(Problem::new(
                    Code::InvalidBlockMap,
                    format!("{name} local header"),
                    format!(
                        "is {} bytes, the block map's LfhSize says {expected}",
                        actual.map_or("not a local header of".into(), |a| a.to_string())
                    ),
                ));
                continue;
            }
        }
        let mut entry = match zip.by_index(index) {
            Ok(entry) => entry,
            Err(e) => {
                v.problems.push(Problem::new(
                    Code::CorruptContent,
                    &name,
                    format!("cannot be read: {e}"),
                ));
                continue;
            }
        };
        match blockmap::check_file(file, map.hash, &mut entry, &name) {
            Ok(checked) => {
                v.files += 1;
                v.blocks += checked.blocks;
            }
            Err(p) => v.problems.push(p),
        }
    }
    let mut missing: Vec<&str> = listed.values().map(|f| f.name.as_str()).collect();
    missing.sort_unstable();
    for name in missing {
        v.problems.push(Problem::new(
            Code::MissingRequiredFile,
            name,
            "is in the block map but not in the ZIP: it was removed after the package was made",
        ));
    }
    Ok(())
}

/// A bundle's payload packages (entries ending `.appx`/`.msix` that are in its block
/// map), each verified as a package of its own.
fn verify_payloads<R: Read + Seek>(
    layout: &Layout,
    map: &BlockMap,
    zip: &mut ZipArchive<R>,
    v: &mut Verification,
    against: Against<'_>,
) -> Result<()> {
    let mut seen = 0usize;
    for (index, record) in layout.records.iter().enumerate() {
        let name = decoded(&record.name);
        let lower = name.to_ascii_lowercase();
        if !(lower.ends_with(".appx") || lower.ends_with(".msix"))
            || !map.files.iter().any(|f| f.key() == blockmap::key(&name))
        {
            continue;
        }
        seen += 1;
        if seen > limits::PAYLOADS {
            return Err(corrupt(
                &name,
                format!("more than {} payload packages", limits::PAYLOADS),
            ));
        }
        let at = format!("payload {name}");
        let mut entry = zip
            .by_index(index)
            .map_err(|e| corrupt(&at, format!("cannot be read: {e}")))?;
        let size = entry.size();
        if size > limits::PAYLOAD_BYTES {
            return Err(corrupt(
                &at,
                format!("{size} bytes, more than the {} read", limits::PAYLOAD_BYTES),
            ));
        }
        let verified = if size <= limits::PAYLOAD_IN_MEMORY {
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(|e| corrupt(&at, format!("cannot be read: {e}")))?;
            drop(entry);
            verify_zip(Cursor::new(bytes), against)
        } else {
            let mut tmp = tempfile::tempfile()
                .map_err(|e| corrupt(&at, format!("cannot make a temp file: {e}")))?;
            io::copy(&mut (&mut entry).take(size), &mut tmp)
                .map_err(|e| corrupt(&at, format!("cannot be read: {e}")))?;
            drop(entry);
            tmp.seek(SeekFrom::Start(0))
                .map_err(|e| corrupt(&at, format!("temp file: {e}")))?;
            verify_zip(BufReader::new(tmp), against)
        };
        match verified {
            Ok(p) => v.payloads.push((name, p)),
            Err(e) => v.problems.push(Problem::new(
                Code::CorruptContent,
                format!("{at}: {}", e.at),
                e.what,
            )),
        }
    }
    Ok(())
}

/// The package's source, shared by the ZIP reader and the reads of raw bytes (the digest
/// of the local records, the local headers). Every raw read seeks first, and none happens
/// while an entry is being read.
struct Shared<R>(std::rc::Rc<std::cell::RefCell<R>>);

impl<R> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<R: Read> Read for Shared<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl<R: Seek> Seek for Shared<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.borrow_mut().seek(pos)
    }
}

/// An entry's uncompressed bytes, at most `limit`.
fn entry_bytes<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    layout: &Layout,
    index: usize,
    limit: u64,
) -> Result<Vec<u8>> {
    let shown = decoded(&layout.records[index].name);
    let entry = zip
        .by_index(index)
        .map_err(|e| corrupt(&shown, format!("cannot be read: {e}")))?;
    let size = entry.size();
    if size > limit {
        return Err(corrupt(
            &shown,
            format!("{size} bytes, more than the {limit} read for this entry"),
        ));
    }
    let mut out = Vec::with_capacity(size as usize);
    entry
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(&shown, format!("cannot be read: {e}")))?;
    if out.len() as u64 != size {
        return Err(corrupt(
            &shown,
            format!("inflates to {} bytes, its header says {size}", out.len()),
        ));
    }
    Ok(out)
}

/// An entry name with its OPC %-escapes decoded (as stored when they do not decode).
fn decoded(name: &str) -> String {
    crate::inspect::package::decode_entry_name(name).unwrap_or_else(|| name.to_string())
}
