//! Virtual disks (VHDX, VHD fixed and dynamic, raw) read as the disk they hold, and the
//! partitions (GPT, MBR, or none) of that disk that hold NTFS.
//!
//! Everything read from the file is untrusted: each offset is checked against the file's
//! length, each count and size is bounded, and a bad disk is an [`Error`] naming the
//! structure and its byte offset.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use super::{Error, Result};

/// Bounds on what is read out of an untrusted disk.
pub mod limits {
    /// Most blocks a VHDX or dynamic VHD may map (4 Mi blocks: 32 MiB of table in memory).
    pub const BLOCKS: u64 = 1 << 22;
    /// Largest virtual disk (64 TiB, the VHDX maximum).
    pub const VIRTUAL_BYTES: u64 = 64 << 40;
    /// Most entries of a VHDX region table (the format's own maximum).
    pub const REGION_ENTRIES: u32 = 2047;
    /// Most entries of a VHDX metadata table (the format's own maximum).
    pub const METADATA_ENTRIES: u16 = 2047;
    /// Most GPT partition entries (what every GPT writer uses).
    pub const GPT_ENTRIES: u32 = 128;
    /// Largest GPT partition entry.
    pub const GPT_ENTRY_BYTES: u32 = 1024;
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// How a virtual disk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Hyper-V's VHDX.
    Vhdx,
    /// VHD with the data followed by a footer.
    VhdFixed,
    /// VHD with a block allocation table.
    VhdDynamic,
    /// No container: the file is the disk.
    Raw,
}

impl Format {
    /// The name users see: `VHDX`, `VHD (fixed)`, `VHD (dynamic)`, `raw`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vhdx => "VHDX",
            Self::VhdFixed => "VHD (fixed)",
            Self::VhdDynamic => "VHD (dynamic)",
            Self::Raw => "raw",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the virtual disk's bytes are in the file.
#[derive(Debug, Clone)]
enum Layout {
    /// The disk is the file's first bytes.
    Contiguous,
    /// The disk is cut in blocks of `block_size`; `offsets[i]` is the file offset of block
    /// `i`, or 0 for a block that reads as zeros.
    Blocks { block_size: u64, offsets: Vec<u64> },
}

/// A virtual disk: `Read + Seek` over the disk a VHDX, VHD or raw file holds.
#[derive(Debug)]
pub struct VirtualDisk<R> {
    inner: R,
    format: Format,
    layout: Layout,
    len: u64,
    sector_size: u64,
    pos: u64,
}

impl<R: Read + Seek> VirtualDisk<R> {
    /// Opens a disk file, telling its format from its contents: VHDX (`vhdxfile` at 0),
    /// VHD (`conectix` footer at the end), or else raw.
    pub fn open(mut inner: R) -> Result<Self> {
        let file_len = inner
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::new("disk file", format!("cannot find its length: {e}")))?;
        let mut file = FileBytes {
            inner: &mut inner,
            len: file_len,
        };
        let geometry = if file.starts_with(0, b"vhdxfile")? {
            vhdx::open(&mut file)?
        } else if file_len >= 512 && file.starts_with(file_len - 512, b"conectix")? {
            vhd::open(&mut file)?
        } else {
            Geometry {
                format: Format::Raw,
                layout: Layout::Contiguous,
                len: file_len,
                sector_size: 512,
            }
        };
        Ok(Self {
            inner,
            format: geometry.format,
            layout: geometry.layout,
            len: geometry.len,
            sector_size: geometry.sector_size,
            pos: 0,
        })
    }

    /// The container format: `VHDX`, `VHD (fixed)`, `VHD (dynamic)` or `raw`.
    pub fn format(&self) -> &'static str {
        self.format.as_str()
    }

    /// The container format.
    pub fn kind(&self) -> Format {
        self.format
    }

    /// Size of the virtual disk, in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the virtual disk has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Logical sector size of the virtual disk (512 or 4096).
    pub fn sector_size(&self) -> u64 {
        self.sector_size
    }

    /// The NTFS volumes on this disk: see [`find_volumes`].
    pub fn volumes(&mut self) -> Result<Vec<Volume>> {
        let (len, sector_size) = (self.len, self.sector_size);
        find_volumes(self, len, sector_size)
    }

    /// The file offset holding virtual byte `pos` (`None` reads as zeros) and how many
    /// bytes from there are contiguous in the file.
    fn locate(&self, pos: u64) -> (Option<u64>, u64) {
        let left = self.len.saturating_sub(pos);
        match &self.layout {
            Layout::Contiguous => (Some(pos), left),
            Layout::Blocks {
                block_size,
                offsets,
            } => {
                let within = pos % block_size;
                let run = (block_size - within).min(left);
                let index = usize::try_from(pos / block_size).unwrap_or(usize::MAX);
                match offsets.get(index) {
                    Some(&offset) if offset != 0 => (Some(offset + within), run),
                    _ => (None, run),
                }
            }
        }
    }
}

impl<R: Read + Seek> Read for VirtualDisk<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let (at, run) = self.locate(self.pos);
        let n = usize::try_from(run).map_or(buf.len(), |run| run.min(buf.len()));
        let Some(buf) = buf.get_mut(..n) else {
            return Ok(0);
        };
        let read = match at {
            None => {
                buf.fill(0);
                n
            }
            Some(offset) => {
                self.inner.seek(SeekFrom::Start(offset))?;
                let read = self.inner.read(buf)?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the disk file ends at 0x{offset:x}, inside the disk's data"),
                    ));
                }
                read
            }
        };
        self.pos += read as u64;
        Ok(read)
    }
}

impl<R: Read + Seek> Seek for VirtualDisk<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = seek_within(self.pos, self.len, to)?;
        Ok(self.pos)
    }
}

/// The position a seek leads to, in a stream of `len` bytes at `pos`.
fn seek_within(pos: u64, len: u64, to: SeekFrom) -> io::Result<u64> {
    let target = match to {
        SeekFrom::Start(n) => Some(n),
        SeekFrom::End(d) => len.checked_add_signed(d),
        SeekFrom::Current(d) => pos.checked_add_signed(d),
    };
    target.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "seek before the start or past 2^64",
        )
    })
}

/// What opening a container found.
struct Geometry {
    format: Format,
    layout: Layout,
    len: u64,
    sector_size: u64,
}

/// The disk file, read at checked offsets.
struct FileBytes<'a, R> {
    inner: &'a mut R,
    len: u64,
}

impl<R: Read + Seek> FileBytes<'_, R> {
    /// Reads `buf.len()` bytes at `offset`, the structure read being `at`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8], at: &str) -> Result<()> {
        self.check_range(offset, buf.len() as u64, at)?;
        self.inner
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.inner.read_exact(buf))
            .map_err(|e| Error::new(at, format!("cannot read {} bytes: {e}", buf.len())))
    }

    /// Reads `len` bytes at `offset` (`len` already bounded by the caller).
    fn read_vec(&mut self, offset: u64, len: usize, at: &str) -> Result<Vec<u8>> {
        self.check_range(offset, len as u64, at)?;
        let mut buf = vec![0; len];
        self.read_at(offset, &mut buf, at)?;
        Ok(buf)
    }

    /// An error unless `[offset, offset + len)` lies inside the file.
    fn check_range(&self, offset: u64, len: u64, at: &str) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::new(
                at,
                format!(
                    "needs {len} bytes at 0x{offset:x}, past the end of the {} file",
                    size_text(self.len)
                ),
            )),
        }
    }

    /// Whether the file holds `magic` at `offset`.
    fn starts_with(&mut self, offset: u64, magic: &[u8]) -> Result<bool> {
        if offset.saturating_add(magic.len() as u64) > self.len {
            return Ok(false);
        }
        let mut buf = [0u8; 8];
        let buf = buf.get_mut(..magic.len()).unwrap_or_default();
        self.read_at(offset, buf, "disk file")?;
        Ok(buf == magic)
    }
}

/// A size for people: `4 MiB`, `1536 KiB`, `700 bytes`.
fn size_text(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes}-byte")
    }
}

/// `N` bytes of `b` at `off`, zeros where `b` is too short.
fn array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = off.checked_add(N).and_then(|end| b.get(off..end)) {
        out.copy_from_slice(s);
    }
    out
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(array(b, off))
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(array(b, off))
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(array(b, off))
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(array(b, off))
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(array(b, off))
}

/// A CRC-32 table for a reflected polynomial.
const fn crc_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

const CRC32_IEEE: [u32; 256] = crc_table(0xEDB8_8320);
const CRC32_CASTAGNOLI: [u32; 256] = crc_table(0x82F6_3B78);

fn crc(table: &[u32; 256], data: &[u8]) -> u32 {
    !data
        .iter()
        .fold(!0u32, |c, &b| table[usize::from((c as u8) ^ b)] ^ (c >> 8))
}

/// CRC-32 (IEEE), as GPT uses.
fn crc32(data: &[u8]) -> u32 {
    crc(&CRC32_IEEE, data)
}

/// CRC-32C (Castagnoli), as VHDX uses.
fn crc32c(data: &[u8]) -> u32 {
    crc(&CRC32_CASTAGNOLI, data)
}

/// `data` with the 4 bytes at `off` zeroed: checksums are computed so.
fn without_checksum(data: &[u8], off: usize) -> Vec<u8> {
    let mut copy = data.to_vec();
    if let Some(field) = copy.get_mut(off..off + 4) {
        field.fill(0);
    }
    copy
}

/// A GUID in its mixed-endian on-disk form, shown as Windows writes it.
fn guid_text(b: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        le32(b, 0),
        le16(b, 4),
        le16(b, 6),
        b[8],
        b[9],
        b[10..]
            .iter()
            .map(|x| format!("{x:02X}"))
            .collect::<String>()
    )
}

mod vhdx {
    //! MS-VHDX: file identifier, two headers, two region tables, metadata, BAT.

    use super::*;

    const HEADER_OFFSETS: [u64; 2] = [64 * KIB, 128 * KIB];
    const HEADER_BYTES: usize = 4096;
    const REGION_OFFSETS: [u64; 2] = [192 * KIB, 256 * KIB];
    const REGION_BYTES: usize = 64 * 1024;
    const METADATA_TABLE_BYTES: usize = 64 * 1024;

    const BAT: [u8; 16] = guid(
        0x2DC2_7766,
        0xF623,
        0x4200,
        *b"\x9D\x64\x11\x5E\x9B\xFD\x4A\x08",
    );
    const METADATA: [u8; 16] = guid(
        0x8B7C_A206,
        0x4790,
        0x4B9A,
        *b"\xB8\xFE\x57\x5F\x05\x0F\x88\x6E",
    );
    const FILE_PARAMETERS: [u8; 16] = guid(
        0xCAA1_6737,
        0xFA36,
        0x4D43,
        *b"\xB3\xB6\x33\xF0\xAA\x44\xE7\x6B",
    );
    const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
        0x2FA5_4224,
        0xCD1B,
        0x4876,
        *b"\xB2\x11\x5D\xBE\xD8\x3B\xF4\xB8",
    );
    const LOGICAL_SECTOR_SIZE: [u8; 16] = guid(
        0x8141_BF1D,
        0xA96F,
        0x4709,
        *b"\xBA\x47\xF2\x33\xA8\xFA\xAB\x5F",
    );
    const VIRTUAL_DISK_ID: [u8; 16] = guid(
        0xBECA_12AB,
        0xB2E6,
        0x4523,
        *b"\x93\xEF\xC3\x09\xE0\x00\xC7\x46",
    );
    const PHYSICAL_SECTOR_SIZE: [u8; 16] = guid(
        0xCDA3_48C7,
        0x445D,
        0x4471,
        *b"\x9C\xC9\xE9\x88\x52\x51\xC5\x56",
    );
    const PARENT_LOCATOR: [u8; 16] = guid(
        0xA8D3_5F2D,
        0xB30B,
        0x454D,
        *b"\xAB\xF7\xD3\xD8\x48\x34\xAB\x0C",
    );

    /// A GUID's on-disk bytes from its text fields.
    const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        [
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ]
    }

    /// What the valid header says.
    struct Header {
        offset: u64,
        sequence: u64,
        /// Whether the log holds writes not yet applied (a non-zero log GUID).
        has_log: bool,
    }

    /// Where the BAT and the metadata are.
    struct Regions {
        at: String,
        bat: (u64, u64),
        metadata: (u64, u64),
    }

    /// What the metadata says.
    struct Parameters {
        block_size: u64,
        virtual_size: u64,
        sector_size: u64,
    }

    pub(super) fn open<R: Read + Seek>(file: &mut FileBytes<'_, R>) -> Result<Geometry> {
        let header = current_header(file)?;
        let regions = region_table(file)?;
        let params = metadata(file, regions.metadata)?;
        let offsets = bat(file, &regions, &params)
            .map_err(|e| e.within(format!("VHDX (header at 0x{:x})", header.offset)))?;
        Ok(Geometry {
            format: Format::Vhdx,
            layout: Layout::Blocks {
                block_size: params.block_size,
                offsets,
            },
            len: params.virtual_size,
            sector_size: params.sector_size,
        })
    }

    /// The valid header with the higher sequence number.
    fn current_header<R: Read + Seek>(file: &mut FileBytes<'_, R>) -> Result<Header> {
        let mut best: Option<Header> = None;
        let mut problems = Vec::new();
        for offset in HEADER_OFFSETS {
            match header(file, offset) {
                Ok(h) if best.as_ref().is_none_or(|b| h.sequence > b.sequence) => best = Some(h),
                Ok(_) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        let best = best.ok_or_else(|| {
            Error::new(
                "VHDX headers",
                format!("neither header is valid: {}", problems.join("; ")),
            )
        })?;
        if best.has_log {
            return Err(Error::new(
                format!("VHDX header at 0x{:x}", best.offset),
                "the log holds writes not yet applied (the disk was not closed cleanly): \
                 attach it once in Windows, or run `qemu-img check -r all` on it, then retry",
            ));
        }
        Ok(best)
    }

    fn header<R: Read + Seek>(file: &mut FileBytes<'_, R>, offset: u64) -> Result<Header> {
        let at = format!("VHDX header at 0x{offset:x}");
        let mut b = vec![0u8; HEADER_BYTES];
        file.read_at(offset, &mut b, &at)?;
        if b.get(..4) != Some(b"head") {
            return Err(Error::new(at, "no \"head\" signature"));
        }
        let stored = le32(&b, 4);
        let computed = crc32c(&without_checksum(&b, 4));
        if stored != computed {
            return Err(Error::new(
                at,
                format!("CRC-32C is 0x{computed:08x}, the header says 0x{stored:08x}"),
            ));
        }
        let version = le16(&b, 66);
        if version != 1 {
            return Err(Error::new(
                at,
                format!("version {version}, only 1 is known"),
            ));
        }
        Ok(Header {
            offset,
            sequence: le64(&b, 8),
            has_log: b.get(48..64).is_some_and(|log| log.iter().any(|&x| x != 0)),
        })
    }

    /// The first valid region table (the second is its copy).
    fn region_table<R: Read + Seek>(file: &mut FileBytes<'_, R>) -> Result<Regions> {
        let first = regions_at(file, REGION_OFFSETS[0]);
        match first {
            Ok(r) => Ok(r),
            Err(first) => regions_at(file, REGION_OFFSETS[1]).map_err(|second| {
                Error::new(
                    "VHDX region tables",
                    format!("neither is valid: {first}; {second}"),
                )
            }),
        }
    }

    fn regions_at<R: Read + Seek>(file: &mut FileBytes<'_, R>, offset: u64) -> Result<Regions> {
        let at = format!("VHDX region table at 0x{offset:x}");
        let b = file.read_vec(offset, REGION_BYTES, &at)?;
        if b.get(..4) != Some(b"regi") {
            return Err(Error::new(at, "no \"regi\" signature"));
        }
        let stored = le32(&b, 4);
        let computed = crc32c(&without_checksum(&b, 4));
        if stored != computed {
            return Err(Error::new(
                at,
                format!("CRC-32C is 0x{computed:08x}, the table says 0x{stored:08x}"),
            ));
        }
        let count = le32(&b, 8);
        if count > limits::REGION_ENTRIES {
            return Err(Error::new(
                at,
                format!(
                    "{count} entries, more than the {} the format allows",
                    limits::REGION_ENTRIES
                ),
            ));
        }
        let (mut bat, mut metadata) = (None, None);
        for i in 0..count as usize {
            let e = b.get(16 + i * 32..16 + (i + 1) * 32).unwrap_or_default();
            let id: [u8; 16] = array(e, 0);
            let region = (le64(e, 16), u64::from(le32(e, 24)));
            let name = match id {
                BAT => "BAT",
                METADATA => "metadata",
                _ if le32(e, 28) & 1 != 0 => {
                    return Err(Error::new(
                        &at,
                        format!(
                            "requires region {}, which this reader does not know",
                            guid_text(&id)
                        ),
                    ));
                }
                _ => continue,
            };
            check_region(file, &at, name, region)?;
            if name == "BAT" {
                bat = Some(region);
            } else {
                metadata = Some(region);
            }
        }
        match (bat, metadata) {
            (Some(bat), Some(metadata)) => Ok(Regions { at, bat, metadata }),
            (None, _) => Err(Error::new(at, "has no BAT region")),
            (_, None) => Err(Error::new(at, "has no metadata region")),
        }
    }

    /// An error unless a region is 1 MiB aligned, past the header section and in the file.
    fn check_region<R: Read + Seek>(
        file: &FileBytes<'_, R>,
        at: &str,
        name: &str,
        (offset, len): (u64, u64),
    ) -> Result<()> {
        if offset < MIB || !offset.is_multiple_of(MIB) {
            return Err(Error::new(
                at,
                format!("{name} region at 0x{offset:x} is not a 1 MiB multiple past the headers"),
            ));
        }
        if offset.saturating_add(len) > file.len {
            return Err(Error::new(
                at,
                format!(
                    "{name} region points to 0x{offset:x}..0x{:x}, past the end of the {} file",
                    offset.saturating_add(len),
                    size_text(file.len)
                ),
            ));
        }
        Ok(())
    }

    fn metadata<R: Read + Seek>(
        file: &mut FileBytes<'_, R>,
        (offset, len): (u64, u64),
    ) -> Result<Parameters> {
        let at = format!("VHDX metadata table at 0x{offset:x}");
        if len < METADATA_TABLE_BYTES as u64 {
            return Err(Error::new(at, format!("the region is only {len} bytes")));
        }
        let b = file.read_vec(offset, METADATA_TABLE_BYTES, &at)?;
        if b.get(..8) != Some(b"metadata") {
            return Err(Error::new(at, "no \"metadata\" signature"));
        }
        let count = le16(&b, 10);
        if count > limits::METADATA_ENTRIES {
            return Err(Error::new(
                at,
                format!(
                    "{count} entries, more than the {} the format allows",
                    limits::METADATA_ENTRIES
                ),
            ));
        }
        let mut items = Items::default();
        for i in 0..usize::from(count) {
            let e = b.get(32 + i * 32..32 + (i + 1) * 32).unwrap_or_default();
            items.read(file, &at, (offset, len), e)?;
        }
        items.parameters(&at)
    }

    /// The metadata items this reader needs.
    #[derive(Default)]
    struct Items {
        file_parameters: Option<(u32, u32)>,
        virtual_size: Option<u64>,
        sector_size: Option<u32>,
    }

    impl Items {
        /// Reads the item a table entry `e` points to.
        fn read<R: Read + Seek>(
            &mut self,
            file: &mut FileBytes<'_, R>,
            at: &str,
            (region, region_len): (u64, u64),
            e: &[u8],
        ) -> Result<()> {
            let id: [u8; 16] = array(e, 0);
            let (offset, len, flags) = (u64::from(le32(e, 16)), le32(e, 20), le32(e, 24));
            let want = match id {
                FILE_PARAMETERS => 8,
                VIRTUAL_DISK_SIZE => 8,
                LOGICAL_SECTOR_SIZE => 4,
                PARENT_LOCATOR => {
                    return Err(Error::new(
                        at,
                        "has a parent locator: this is a differencing disk; \
                         merge it into its parent first",
                    ));
                }
                VIRTUAL_DISK_ID | PHYSICAL_SECTOR_SIZE => return Ok(()),
                _ if flags & 4 != 0 => {
                    return Err(Error::new(
                        at,
                        format!(
                            "requires metadata item {}, which this reader does not know",
                            guid_text(&id)
                        ),
                    ));
                }
                _ => return Ok(()),
            };
            let item_at = format!("{at}: item {}", guid_text(&id));
            if len < want || offset < 64 * KIB || offset + u64::from(len) > region_len {
                return Err(Error::new(
                    item_at,
                    format!(
                        "{len} bytes at 0x{offset:x} of a {region_len}-byte region: \
                         not a valid place for a {want}-byte item"
                    ),
                ));
            }
            let mut b = [0u8; 8];
            let b = b.get_mut(..want as usize).unwrap_or_default();
            file.read_at(region + offset, b, &item_at)?;
            match id {
                FILE_PARAMETERS => self.file_parameters = Some((le32(b, 0), le32(b, 4))),
                VIRTUAL_DISK_SIZE => self.virtual_size = Some(le64(b, 0)),
                _ => self.sector_size = Some(le32(b, 0)),
            }
            Ok(())
        }

        /// Checks the items and gives the disk's parameters.
        fn parameters(&self, at: &str) -> Result<Parameters> {
            let missing = |name: &str| Error::new(at, format!("has no {name} item"));
            let (block_size, flags) = self
                .file_parameters
                .ok_or_else(|| missing("file parameters"))?;
            let virtual_size = self
                .virtual_size
                .ok_or_else(|| missing("virtual disk size"))?;
            let sector_size = self
                .sector_size
                .ok_or_else(|| missing("logical sector size"))?;
            if flags & 2 != 0 {
                return Err(Error::new(
                    at,
                    "the file parameters say it has a parent: this is a differencing disk; \
                     merge it into its parent first",
                ));
            }
            if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&u64::from(block_size))
            {
                return Err(Error::new(
                    at,
                    format!("block size {block_size} is not a power of two from 1 to 256 MiB"),
                ));
            }
            if sector_size != 512 && sector_size != 4096 {
                return Err(Error::new(
                    at,
                    format!("logical sector size {sector_size} is neither 512 nor 4096"),
                ));
            }
            if virtual_size == 0
                || virtual_size > limits::VIRTUAL_BYTES
                || !virtual_size.is_multiple_of(u64::from(sector_size))
            {
                return Err(Error::new(
                    at,
                    format!(
                        "virtual disk size {virtual_size} is not a multiple of the sector \
                         size from 1 sector to 64 TiB"
                    ),
                ));
            }
            Ok(Parameters {
                block_size: u64::from(block_size),
                virtual_size,
                sector_size: u64::from(sector_size),
            })
        }
    }

    /// Reads the BAT: the file offset of each payload block, 0 for blocks that read as
    /// zeros. Sector bitmap entries, one after every `chunk ratio` payload entries, are
    /// skipped.
    fn bat<R: Read + Seek>(
        file: &mut FileBytes<'_, R>,
        regions: &Regions,
        p: &Parameters,
    ) -> Result<Vec<u64>> {
        let blocks = p.virtual_size.div_ceil(p.block_size);
        if blocks > limits::BLOCKS {
            return Err(Error::new(
                &regions.at,
                format!(
                    "{blocks} blocks, more than the {} this reader maps",
                    limits::BLOCKS
                ),
            ));
        }
        let chunk_ratio = ((1u64 << 23) * p.sector_size) / p.block_size;
        let entries = blocks + (blocks.saturating_sub(1)) / chunk_ratio;
        let (bat_offset, bat_len) = regions.bat;
        if entries * 8 > bat_len {
            return Err(Error::new(
                &regions.at,
                format!(
                    "BAT region is {bat_len} bytes, too small for {entries} entries of 8 bytes"
                ),
            ));
        }
        let table = file.read_vec(bat_offset, (entries * 8) as usize, "VHDX BAT")?;
        (0..blocks)
            .map(|block| {
                let index = block + block / chunk_ratio;
                let entry = le64(&table, (index * 8) as usize);
                payload_offset(file, p, block, bat_offset + index * 8, entry)
            })
            .collect()
    }

    /// Where block `block` is, from its BAT entry `entry` stored at `at`.
    fn payload_offset<R: Read + Seek>(
        file: &FileBytes<'_, R>,
        p: &Parameters,
        block: u64,
        at: u64,
        entry: u64,
    ) -> Result<u64> {
        let at = format!("VHDX BAT entry {block} at 0x{at:x}");
        match entry & 7 {
            0..=3 => Ok(0),
            6 | 7 => {
                let offset = (entry >> 20) * MIB;
                let used = p.block_size.min(p.virtual_size - block * p.block_size);
                if offset < MIB {
                    return Err(Error::new(
                        at,
                        format!("payload block at 0x{offset:x}, inside the header section"),
                    ));
                }
                file.check_range(offset, used, &at)?;
                Ok(offset)
            }
            state => Err(Error::new(
                at,
                format!("unknown payload block state {state}"),
            )),
        }
    }
}

mod vhd {
    //! The VHD format: a 512-byte footer at the end; for a dynamic disk, a copy of the
    //! footer at 0, a dynamic header, and a BAT of big-endian sector numbers.

    use super::*;

    const FIXED: u32 = 2;
    const DYNAMIC: u32 = 3;
    const DIFFERENCING: u32 = 4;
    const DYNAMIC_HEADER_BYTES: usize = 1024;

    pub(super) fn open<R: Read + Seek>(file: &mut FileBytes<'_, R>) -> Result<Geometry> {
        let footer_at = file.len - 512;
        let at = format!("VHD footer at 0x{footer_at:x}");
        let footer = file.read_vec(footer_at, 512, &at)?;
        check_sum(&footer, 64, &at)?;
        let size = be64(&footer, 48);
        if size == 0 || size > limits::VIRTUAL_BYTES || !size.is_multiple_of(512) {
            return Err(Error::new(
                at,
                format!("current size {size} is not a multiple of 512 up to 64 TiB"),
            ));
        }
        match be32(&footer, 60) {
            FIXED => fixed(file, &at, size),
            DYNAMIC => dynamic(file, &at, be64(&footer, 16), size),
            DIFFERENCING => Err(Error::new(
                at,
                "this is a differencing disk; merge it into its parent first",
            )),
            other => Err(Error::new(at, format!("unknown disk type {other}"))),
        }
    }

    /// An error unless the one's complement of the byte sum (without the checksum field at
    /// `off`) is the stored checksum.
    fn check_sum(b: &[u8], off: usize, at: &str) -> Result<()> {
        let stored = be32(b, off);
        let sum = without_checksum(b, off)
            .iter()
            .fold(0u32, |s, &x| s.wrapping_add(u32::from(x)));
        if !sum != stored {
            return Err(Error::new(
                at,
                format!(
                    "checksum is 0x{:08x}, the structure says 0x{stored:08x}",
                    !sum
                ),
            ));
        }
        Ok(())
    }

    fn fixed<R: Read + Seek>(file: &FileBytes<'_, R>, at: &str, size: u64) -> Result<Geometry> {
        let data = file.len - 512;
        if size > data {
            return Err(Error::new(
                at,
                format!("says the disk is {size} bytes, but only {data} bytes precede the footer"),
            ));
        }
        Ok(Geometry {
            format: Format::VhdFixed,
            layout: Layout::Contiguous,
            len: size,
            sector_size: 512,
        })
    }

    fn dynamic<R: Read + Seek>(
        file: &mut FileBytes<'_, R>,
        footer_at: &str,
        header_offset: u64,
        size: u64,
    ) -> Result<Geometry> {
        let at = format!("VHD dynamic header at 0x{header_offset:x}");
        if header_offset < 512 {
            return Err(Error::new(
                footer_at,
                format!("dynamic header offset 0x{header_offset:x} overlaps the footer copy"),
            ));
        }
        let h = file.read_vec(header_offset, DYNAMIC_HEADER_BYTES, &at)?;
        if h.get(..8) != Some(b"cxsparse") {
            return Err(Error::new(at, "no \"cxsparse\" cookie"));
        }
        check_sum(&h, 36, &at)?;
        let (table_offset, max_entries, block_size) = (be64(&h, 16), be32(&h, 28), be32(&h, 32));
        if !block_size.is_power_of_two() || !(512..=256 * MIB).contains(&u64::from(block_size)) {
            return Err(Error::new(
                at,
                format!("block size {block_size} is not a power of two from 512 to 256 MiB"),
            ));
        }
        let block_size = u64::from(block_size);
        let blocks = size.div_ceil(block_size);
        if blocks > u64::from(max_entries) || blocks > limits::BLOCKS {
            return Err(Error::new(
                at,
                format!(
                    "a {size}-byte disk needs {blocks} blocks; the table holds {max_entries} \
                     and this reader maps at most {}",
                    limits::BLOCKS
                ),
            ));
        }
        let table = file.read_vec(
            table_offset,
            (blocks * 4) as usize,
            &format!("VHD BAT at 0x{table_offset:x}"),
        )?;
        let bitmap = (block_size / 512).div_ceil(8).div_ceil(512) * 512;
        let offsets = (0..blocks)
            .map(|block| {
                let entry = be32(&table, (block * 4) as usize);
                let used = block_size.min(size - block * block_size);
                block_offset(file, table_offset + block * 4, block, entry, bitmap, used)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Geometry {
            format: Format::VhdDynamic,
            layout: Layout::Blocks {
                block_size,
                offsets,
            },
            len: size,
            sector_size: 512,
        })
    }

    /// Where block `block`'s data is: after its sector bitmap, at sector `entry`. The
    /// bitmap is not read: a present block is read whole, as the writers (Windows, qemu)
    /// write present blocks whole.
    fn block_offset<R: Read + Seek>(
        file: &FileBytes<'_, R>,
        entry_at: u64,
        block: u64,
        entry: u32,
        bitmap: u64,
        used: u64,
    ) -> Result<u64> {
        if entry == u32::MAX {
            return Ok(0);
        }
        let at = format!("VHD BAT entry {block} at 0x{entry_at:x}");
        let start = u64::from(entry) * 512;
        if start == 0 {
            return Err(Error::new(at, "block at sector 0, over the footer copy"));
        }
        let data = start + bitmap;
        file.check_range(data, used, &at)?;
        Ok(data)
    }
}

/// A volume on a disk that holds NTFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Byte offset of the volume on the disk.
    pub offset: u64,
    /// Size of the volume, in bytes.
    pub length: u64,
    /// Where it is: `GPT partition 1`, `MBR partition 1` or `no partition table`.
    pub description: String,
}

const NTFS_OEM_ID: &[u8; 8] = b"NTFS    ";
const GPT_PROTECTIVE: u8 = 0xEE;

/// The NTFS volumes of a disk of `len` bytes with `sector_size`-byte sectors: the GPT
/// partitions (behind a protective MBR), the MBR primary partitions, or the whole disk
/// when sector 0 is an NTFS boot sector. A partition holds NTFS when its first sector
/// has the OEM id `NTFS    `. An error when there is none.
pub fn find_volumes<R: Read + Seek>(
    disk: &mut R,
    len: u64,
    sector_size: u64,
) -> Result<Vec<Volume>> {
    let mut disk = FileBytes { inner: disk, len };
    let mut mbr = [0u8; 512];
    disk.read_at(0, &mut mbr, "sector 0")?;
    if mbr.get(3..11) == Some(NTFS_OEM_ID) {
        return Ok(vec![Volume {
            offset: 0,
            length: len,
            description: "no partition table".into(),
        }]);
    }
    if mbr.get(510..512) != Some(&[0x55, 0xAA]) {
        return Err(Error::new(
            "sector 0",
            "holds neither a partition table (no 0x55AA signature) nor an NTFS boot sector",
        ));
    }
    let primaries = mbr_entries(&mbr, sector_size);
    let candidates = if primaries.iter().any(|p| p.kind == GPT_PROTECTIVE) {
        gpt_partitions(&mut disk, sector_size)?
    } else {
        primaries
            .into_iter()
            .filter(|p| p.kind != 0)
            .map(|p| p.range)
            .collect()
    };
    ntfs_volumes(&mut disk, candidates)
}

/// A partition table entry: where it is and what it is called.
struct Candidate {
    kind: u8,
    range: (u64, u64, String),
}

/// The four primary entries of an MBR, as (type, (offset, length, description)).
fn mbr_entries(mbr: &[u8], sector_size: u64) -> Vec<Candidate> {
    (0..4)
        .map(|i| {
            let e = mbr
                .get(446 + i * 16..446 + (i + 1) * 16)
                .unwrap_or_default();
            let kind = e.get(4).copied().unwrap_or(0);
            let start = u64::from(le32(e, 8)) * sector_size;
            let length = u64::from(le32(e, 12)) * sector_size;
            Candidate {
                kind,
                range: (start, length, format!("MBR partition {}", i + 1)),
            }
        })
        .collect()
}

/// The GPT's used partition entries, header and entries checked.
fn gpt_partitions<R: Read + Seek>(
    disk: &mut FileBytes<'_, R>,
    sector_size: u64,
) -> Result<Vec<(u64, u64, String)>> {
    let at = format!("GPT header at 0x{sector_size:x}");
    let mut h = vec![0u8; sector_size as usize];
    disk.read_at(sector_size, &mut h, &at)?;
    if h.get(..8) != Some(b"EFI PART") {
        return Err(Error::new(
            at,
            "the MBR is a protective MBR, but there is no \"EFI PART\" signature",
        ));
    }
    let header_size = le32(&h, 12);
    if !(92..=sector_size as u32).contains(&header_size) {
        return Err(Error::new(
            at,
            format!("header size {header_size} is not 92..{sector_size}"),
        ));
    }
    let header = h.get(..header_size as usize).unwrap_or_default();
    let (stored, computed) = (le32(header, 16), crc32(&without_checksum(header, 16)));
    if stored != computed {
        return Err(Error::new(
            at,
            format!("CRC-32 is 0x{computed:08x}, the header says 0x{stored:08x}"),
        ));
    }
    let (entries_lba, count, entry_size) = (le64(&h, 72), le32(&h, 80), le32(&h, 84));
    if count > limits::GPT_ENTRIES {
        return Err(Error::new(
            at,
            format!(
                "{count} partition entries, more than the {} this reader reads",
                limits::GPT_ENTRIES
            ),
        ));
    }
    if !(128..=limits::GPT_ENTRY_BYTES).contains(&entry_size) || !entry_size.is_multiple_of(8) {
        return Err(Error::new(
            at,
            format!(
                "partition entry size {entry_size} is not a multiple of 8 from 128 to {}",
                limits::GPT_ENTRY_BYTES
            ),
        ));
    }
    let entries_offset = entries_lba.checked_mul(sector_size).ok_or_else(|| {
        Error::new(
            &at,
            format!("partition entries at LBA {entries_lba}, past 2^64"),
        )
    })?;
    let entries_at = format!("GPT partition entries at 0x{entries_offset:x}");
    let table = disk.read_vec(entries_offset, (count * entry_size) as usize, &entries_at)?;
    let (stored, computed) = (le32(&h, 88), crc32(&table));
    if stored != computed {
        return Err(Error::new(
            entries_at,
            format!("CRC-32 is 0x{computed:08x}, the header says 0x{stored:08x}"),
        ));
    }
    gpt_entries(&table, entry_size as usize, entries_offset, sector_size)
}

/// The used entries of a GPT partition entry array.
fn gpt_entries(
    table: &[u8],
    entry_size: usize,
    table_offset: u64,
    sector_size: u64,
) -> Result<Vec<(u64, u64, String)>> {
    let mut used = Vec::new();
    for (i, e) in table.chunks_exact(entry_size).enumerate() {
        if e.get(..16).is_some_and(|kind| kind.iter().all(|&x| x == 0)) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        let at = format!(
            "GPT partition entry {} at 0x{:x}",
            i + 1,
            table_offset + (i * entry_size) as u64
        );
        let range = first.checked_mul(sector_size).zip(
            last.checked_sub(first)
                .and_then(|n| (n + 1).checked_mul(sector_size)),
        );
        let Some((offset, length)) = range else {
            return Err(Error::new(
                at,
                format!("LBA {first}..={last} is not a range"),
            ));
        };
        used.push((offset, length, format!("GPT partition {}", i + 1)));
    }
    Ok(used)
}

/// The candidates that lie on the disk and begin with an NTFS boot sector.
fn ntfs_volumes<R: Read + Seek>(
    disk: &mut FileBytes<'_, R>,
    candidates: Vec<(u64, u64, String)>,
) -> Result<Vec<Volume>> {
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for (offset, length, description) in candidates {
        let at = format!("{description} at 0x{offset:x}");
        if offset.checked_add(length).is_none_or(|end| end > disk.len) || length < 512 {
            return Err(Error::new(
                at,
                format!(
                    "{length} bytes at 0x{offset:x} do not fit on the {} disk",
                    size_text(disk.len)
                ),
            ));
        }
        let mut oem = [0u8; 8];
        disk.read_at(offset + 3, &mut oem, &at)?;
        seen.push(description.clone());
        if &oem == NTFS_OEM_ID {
            found.push(Volume {
                offset,
                length,
                description,
            });
        }
    }
    if found.is_empty() {
        let seen = if seen.is_empty() {
            "no partitions".to_string()
        } else {
            seen.join(", ")
        };
        return Err(Error::new(
            "partition table",
            format!("no partition holds NTFS (looked at: {seen})"),
        ));
    }
    Ok(found)
}

/// A window of a disk: `Read + Seek` over `[offset, offset + length)`, to hand one volume
/// to a file system reader.
#[derive(Debug)]
pub struct Partition<R> {
    inner: R,
    offset: u64,
    length: u64,
    pos: u64,
}

impl<R: Read + Seek> Partition<R> {
    /// The window `[offset, offset + length)` of `inner`.
    pub fn new(inner: R, offset: u64, length: u64) -> Self {
        Self {
            inner,
            offset,
            length,
            pos: 0,
        }
    }

    /// The window of `volume`.
    pub fn of(inner: R, volume: &Volume) -> Self {
        Self::new(inner, volume.offset, volume.length)
    }
}

impl<R: Read + Seek> Read for Partition<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.length.saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        let Some(buf) = buf.get_mut(..n) else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let at = self.offset.checked_add(self.pos).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "partition offset past 2^64")
        })?;
        self.inner.seek(SeekFrom::Start(at))?;
        let read = self.inner.read(buf)?;
        self.pos += read as u64;
        Ok(read)
    }
}

impl<R: Read + Seek> Seek for Partition<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = seek_within(self.pos, self.length, to)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn open(bytes: Vec<u8>) -> Result<VirtualDisk<Cursor<Vec<u8>>>> {
        VirtualDisk::open(Cursor::new(bytes))
    }

    fn err(r: Result<impl fmt::Debug>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn read_all<R: Read + Seek>(disk: &mut VirtualDisk<R>) -> Vec<u8> {
        let mut out = Vec::new();
        disk.read_to_end(&mut out).expect("reads");
        out
    }

    fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
        b[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// Sets the VHD checksum at `off`.
    fn vhd_sum(b: &mut [u8], off: usize) {
        put(b, off, &[0; 4]);
        let sum = b.iter().fold(0u32, |s, &x| s.wrapping_add(u32::from(x)));
        put(b, off, &(!sum).to_be_bytes());
    }

    fn vhd_footer(size: u64, kind: u32, data_offset: u64) -> Vec<u8> {
        let mut f = vec![0u8; 512];
        put(&mut f, 0, b"conectix");
        put(&mut f, 12, &0x0001_0000u32.to_be_bytes());
        put(&mut f, 16, &data_offset.to_be_bytes());
        put(&mut f, 40, &size.to_be_bytes());
        put(&mut f, 48, &size.to_be_bytes());
        put(&mut f, 60, &kind.to_be_bytes());
        vhd_sum(&mut f, 64);
        f
    }

    fn patterned(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn crcs_match_their_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn raw_disk_reads_as_itself() {
        let data = patterned(5000, 1);
        let mut disk = open(data.clone()).expect("opens");
        assert_eq!((disk.format(), disk.len()), ("raw", 5000));
        assert_eq!(read_all(&mut disk), data);
        assert_eq!(disk.seek(SeekFrom::End(-10)).expect("seeks"), 4990);
        assert!(disk.seek(SeekFrom::Current(-5000)).is_err());
    }

    #[test]
    fn fixed_vhd() {
        let data = patterned(4096, 2);
        let mut file = data.clone();
        file.extend(vhd_footer(4096, 2, u64::MAX));
        let mut disk = open(file.clone()).expect("opens");
        assert_eq!((disk.format(), disk.len()), ("VHD (fixed)", 4096));
        assert_eq!(read_all(&mut disk), data);

        let mut bad_sum = file.clone();
        let n = bad_sum.len();
        bad_sum[n - 512 + 100] ^= 1;
        assert!(err(open(bad_sum)).contains("checksum"));

        let mut big = data.clone();
        big.extend(vhd_footer(8192, 2, u64::MAX));
        assert!(err(open(big)).contains("precede the footer"));

        let mut child = data;
        child.extend(vhd_footer(4096, 4, 512));
        assert!(err(open(child)).contains("differencing"));
    }

    /// A dynamic VHD of two 4 KiB blocks: block 0 present at sector 4, block 1 not.
    fn dynamic_vhd(block0: &[u8], max_entries: u32, entry0: u32) -> Vec<u8> {
        let footer = vhd_footer(8192, 3, 512);
        let mut f = footer.clone();
        let mut h = vec![0u8; 1024];
        put(&mut h, 0, b"cxsparse");
        put(&mut h, 8, &u64::MAX.to_be_bytes());
        put(&mut h, 16, &1536u64.to_be_bytes());
        put(&mut h, 24, &0x0001_0000u32.to_be_bytes());
        put(&mut h, 28, &max_entries.to_be_bytes());
        put(&mut h, 32, &4096u32.to_be_bytes());
        vhd_sum(&mut h, 36);
        f.extend(h);
        let mut bat = vec![0xFFu8; 512];
        put(&mut bat, 0, &entry0.to_be_bytes());
        f.extend(bat);
        f.extend(vec![0xFFu8; 512]); // block 0's sector bitmap
        f.extend(block0);
        f.extend(footer);
        f
    }

    #[test]
    fn dynamic_vhd_maps_blocks() {
        let block0 = patterned(4096, 3);
        let mut disk = open(dynamic_vhd(&block0, 2, 4)).expect("opens");
        assert_eq!((disk.format(), disk.len()), ("VHD (dynamic)", 8192));
        let all = read_all(&mut disk);
        assert_eq!(&all[..4096], block0.as_slice());
        assert!(all[4096..].iter().all(|&b| b == 0));
    }

    #[test]
    fn dynamic_vhd_errors() {
        let block0 = patterned(4096, 3);
        let e = err(open(dynamic_vhd(&block0, 2, 1000)));
        assert!(
            e.contains("VHD BAT entry 0 at 0x600") && e.contains("past the end"),
            "{e}"
        );
        let e = err(open(dynamic_vhd(&block0, 1, 4)));
        assert!(e.contains("needs 2 blocks; the table holds 1"), "{e}");
        let mut bad_cookie = dynamic_vhd(&block0, 2, 4);
        bad_cookie[512] = b'X';
        assert!(err(open(bad_cookie)).contains("cxsparse"));
    }

    const MIB_USIZE: usize = 1 << 20;

    fn guid_bytes(text: &str) -> [u8; 16] {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        let b: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("hex"))
            .collect();
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        out[4..6].copy_from_slice(&[b[5], b[4]]);
        out[6..8].copy_from_slice(&[b[7], b[6]]);
        out[8..].copy_from_slice(&b[8..]);
        out
    }

    /// Parts of a minimal VHDX, to break one at a time.
    struct Vhdx {
        sequences: [u64; 2],
        log: [bool; 2],
        bat_region: (u64, u32),
        file_flags: u32,
        block_size: u32,
        virtual_size: u64,
        entries: [u64; 2],
    }

    impl Default for Vhdx {
        fn default() -> Self {
            Self {
                sequences: [1, 2],
                log: [false; 2],
                bat_region: (2 << 20, 1 << 20),
                file_flags: 0,
                block_size: 1 << 20,
                virtual_size: 2 << 20,
                entries: [(3 << 20) | 6, 0],
            }
        }
    }

    impl Vhdx {
        /// A 4 MiB file: metadata at 1 MiB, BAT at 2 MiB, block 0 at 3 MiB.
        fn build(&self) -> Vec<u8> {
            let mut f = vec![0u8; 4 * MIB_USIZE];
            put(&mut f, 0, b"vhdxfile");
            for (i, offset) in [64 << 10, 128 << 10].into_iter().enumerate() {
                let mut h = vec![0u8; 4096];
                put(&mut h, 0, b"head");
                put(&mut h, 8, &self.sequences[i].to_le_bytes());
                if self.log[i] {
                    h[48] = 1;
                }
                put(&mut h, 66, &1u16.to_le_bytes());
                let sum = crc32c(&h);
                put(&mut h, 4, &sum.to_le_bytes());
                put(&mut f, offset, &h);
            }
            let mut r = vec![0u8; 64 << 10];
            put(&mut r, 0, b"regi");
            put(&mut r, 8, &2u32.to_le_bytes());
            put(
                &mut r,
                16,
                &guid_bytes("2DC27766-F623-4200-9D64-115E9BFD4A08"),
            );
            put(&mut r, 32, &self.bat_region.0.to_le_bytes());
            put(&mut r, 40, &self.bat_region.1.to_le_bytes());
            put(
                &mut r,
                48,
                &guid_bytes("8B7CA206-4790-4B9A-B8FE-575F050F886E"),
            );
            put(&mut r, 64, &(1u64 << 20).to_le_bytes());
            put(&mut r, 72, &(1u32 << 20).to_le_bytes());
            let sum = crc32c(&r);
            put(&mut r, 4, &sum.to_le_bytes());
            put(&mut f, 192 << 10, &r);
            put(&mut f, 256 << 10, &r);
            let m = MIB_USIZE;
            put(&mut f, m, b"metadata");
            put(&mut f, m + 10, &3u16.to_le_bytes());
            let items = [
                ("CAA16737-FA36-4D43-B3B6-33F0AA44E76B", 0u32, 8u32),
                ("2FA54224-CD1B-4876-B211-5DBED83BF4B8", 8, 8),
                ("8141BF1D-A96F-4709-BA47-F233A8FAAB5F", 16, 4),
            ];
            for (i, (id, off, len)) in items.into_iter().enumerate() {
                let e = m + 32 + i * 32;
                put(&mut f, e, &guid_bytes(id));
                put(&mut f, e + 16, &((64 << 10) + off).to_le_bytes());
                put(&mut f, e + 20, &len.to_le_bytes());
                put(&mut f, e + 24, &6u32.to_le_bytes());
            }
            let items_at = m + (64 << 10);
            put(&mut f, items_at, &self.block_size.to_le_bytes());
            put(&mut f, items_at + 4, &self.file_flags.to_le_bytes());
            put(&mut f, items_at + 8, &self.virtual_size.to_le_bytes());
            put(&mut f, items_at + 16, &512u32.to_le_bytes());
            for (i, e) in self.entries.iter().enumerate() {
                put(&mut f, 2 * m + i * 8, &e.to_le_bytes());
            }
            put(&mut f, 3 * m, &patterned(MIB_USIZE, 4));
            f
        }
    }

    #[test]
    fn vhdx_maps_blocks() {
        let mut disk = open(Vhdx::default().build()).expect("opens");
        assert_eq!((disk.format(), disk.len()), ("VHDX", 2 << 20));
        assert_eq!(disk.sector_size(), 512);
        let all = read_all(&mut disk);
        assert_eq!(&all[..MIB_USIZE], patterned(MIB_USIZE, 4).as_slice());
        assert!(all[MIB_USIZE..].iter().all(|&b| b == 0));
    }

    #[test]
    fn vhdx_header_crcs_and_sequence() {
        let mut both = Vhdx::default().build();
        both[(64 << 10) + 200] ^= 1;
        both[(128 << 10) + 200] ^= 1;
        let e = err(open(both));
        assert!(
            e.contains("neither header is valid") && e.contains("CRC-32C"),
            "{e}"
        );

        let mut one = Vhdx::default().build();
        one[(128 << 10) + 200] ^= 1;
        assert!(open(one).is_ok());

        // The current header (the higher sequence number) has a log to replay.
        let logged = Vhdx {
            log: [false, true],
            ..Vhdx::default()
        };
        let e = err(open(logged.build()));
        assert!(e.contains("header at 0x20000") && e.contains("log"), "{e}");
        // An older header's log does not matter.
        let old_log = Vhdx {
            log: [true, false],
            ..Vhdx::default()
        };
        assert!(open(old_log.build()).is_ok());
    }

    #[test]
    fn vhdx_region_past_the_end() {
        let outside = Vhdx {
            bat_region: (16 << 20, 1 << 20),
            ..Vhdx::default()
        };
        let e = err(open(outside.build()));
        assert!(
            e.contains("VHDX region table at 0x30000")
                && e.contains(
                    "BAT region points to 0x1000000..0x1100000, past the end of the 4 MiB file"
                ),
            "{e}"
        );
    }

    #[test]
    fn vhdx_metadata_and_bat_errors() {
        let child = Vhdx {
            file_flags: 2,
            ..Vhdx::default()
        };
        assert!(err(open(child.build())).contains("differencing"));
        let odd_block = Vhdx {
            block_size: 3 << 20,
            ..Vhdx::default()
        };
        assert!(err(open(odd_block.build())).contains("block size"));
        let huge = Vhdx {
            virtual_size: 32 << 40,
            ..Vhdx::default()
        };
        assert!(err(open(huge.build())).contains("blocks, more than"));
        let too_big_for_bat = Vhdx {
            virtual_size: 1 << 40,
            ..Vhdx::default()
        };
        assert!(err(open(too_big_for_bat.build())).contains("too small for"));
        let far = Vhdx {
            entries: [(1 << 30) | 6, 0],
            ..Vhdx::default()
        };
        let e = err(open(far.build()));
        assert!(
            e.contains("VHDX BAT entry 0 at 0x200000") && e.contains("past the end"),
            "{e}"
        );
        let state = Vhdx {
            entries: [(3 << 20) | 4, 0],
            ..Vhdx::default()
        };
        assert!(err(open(state.build())).contains("unknown payload block state 4"));
    }

    #[test]
    fn truncated_containers_are_errors() {
        let vhdx = Vhdx::default().build();
        for cut in (0..vhdx.len()).step_by(37 << 10).skip(1) {
            assert!(open(vhdx[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        assert!(open(b"vhdxfile".to_vec()).is_err());
        // A dynamic VHD cut before its block: the footer copy at the end still points in.
        let vhd = dynamic_vhd(&patterned(4096, 3), 2, 4);
        let mut cut = vhd[..2048].to_vec();
        cut.extend_from_slice(&vhd[vhd.len() - 512..]);
        assert!(err(open(cut)).contains("past the end"));
    }

    fn sector0_mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        for (i, (kind, start, count)) in entries.iter().enumerate() {
            let e = 446 + i * 16;
            s[e + 4] = *kind;
            put(&mut s, e + 8, &start.to_le_bytes());
            put(&mut s, e + 12, &count.to_le_bytes());
        }
        put(&mut s, 510, &[0x55, 0xAA]);
        s
    }

    fn volumes(disk: &[u8]) -> Result<Vec<Volume>> {
        find_volumes(&mut Cursor::new(disk), disk.len() as u64, 512)
    }

    #[test]
    fn bare_ntfs_volume() {
        let mut disk = vec![0u8; 4096];
        put(&mut disk, 3, NTFS_OEM_ID);
        let v = volumes(&disk).expect("finds");
        assert_eq!(
            v,
            [Volume {
                offset: 0,
                length: 4096,
                description: "no partition table".into()
            }]
        );
    }

    #[test]
    fn mbr_partitions() {
        let mut disk = sector0_mbr(&[(0x83, 40, 8), (7, 8, 16)]);
        disk.resize(64 * 512, 0);
        put(&mut disk, 8 * 512 + 3, NTFS_OEM_ID);
        let v = volumes(&disk).expect("finds");
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].offset, v[0].length, v[0].description.as_str()),
            (4096, 8192, "MBR partition 2")
        );

        let mut beyond = sector0_mbr(&[(7, 8, 1000)]);
        beyond.resize(64 * 512, 0);
        assert!(err(volumes(&beyond)).contains("do not fit"));

        let mut none = sector0_mbr(&[(0x83, 8, 16)]);
        none.resize(64 * 512, 0);
        let e = err(volumes(&none));
        assert!(
            e.contains("no partition holds NTFS (looked at: MBR partition 1)"),
            "{e}"
        );

        let e = err(volumes(&[0u8; 512]));
        assert!(e.contains("neither a partition table"), "{e}");
        let e = err(volumes(&[0u8; 100]));
        assert!(e.contains("past the end of the 100-byte file"), "{e}");
    }

    /// A GPT disk of 128 sectors: one basic data partition at LBA 34..=49.
    fn gpt_disk(count: u32, entry_size: u32) -> Vec<u8> {
        let mut disk = sector0_mbr(&[(GPT_PROTECTIVE, 1, 127)]);
        disk.resize(128 * 512, 0);
        let table_len = (count as usize * entry_size as usize).min(32 * 512);
        let mut table = vec![0u8; table_len];
        if table_len >= 128 {
            put(
                &mut table,
                0,
                &guid_bytes("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
            );
            put(&mut table, 32, &34u64.to_le_bytes());
            put(&mut table, 40, &49u64.to_le_bytes());
        }
        put(&mut disk, 1024, &table);
        let mut h = vec![0u8; 92];
        put(&mut h, 0, b"EFI PART");
        put(&mut h, 8, &0x0001_0000u32.to_le_bytes());
        put(&mut h, 12, &92u32.to_le_bytes());
        put(&mut h, 24, &1u64.to_le_bytes());
        put(&mut h, 72, &2u64.to_le_bytes());
        put(&mut h, 80, &count.to_le_bytes());
        put(&mut h, 84, &entry_size.to_le_bytes());
        put(&mut h, 88, &crc32(&table).to_le_bytes());
        let sum = crc32(&h);
        put(&mut h, 16, &sum.to_le_bytes());
        put(&mut disk, 512, &h);
        put(&mut disk, 34 * 512 + 3, NTFS_OEM_ID);
        disk
    }

    #[test]
    fn gpt_partitions_found() {
        let v = volumes(&gpt_disk(128, 128)).expect("finds");
        assert_eq!(
            v,
            [Volume {
                offset: 34 * 512,
                length: 16 * 512,
                description: "GPT partition 1".into()
            }]
        );
    }

    #[test]
    fn gpt_errors() {
        let e = err(volumes(&gpt_disk(1_000_000, 128)));
        assert!(
            e.contains("1000000 partition entries, more than the 128"),
            "{e}"
        );
        let e = err(volumes(&gpt_disk(4, 100)));
        assert!(e.contains("partition entry size 100"), "{e}");
        let mut bad_header = gpt_disk(128, 128);
        bad_header[512 + 40] ^= 1;
        let e = err(volumes(&bad_header));
        assert!(
            e.contains("GPT header at 0x200") && e.contains("CRC-32"),
            "{e}"
        );
        let mut bad_entries = gpt_disk(128, 128);
        bad_entries[1024 + 60] ^= 1;
        let e = err(volumes(&bad_entries));
        assert!(
            e.contains("GPT partition entries at 0x400") && e.contains("CRC-32"),
            "{e}"
        );
        let mut no_ntfs = gpt_disk(128, 128);
        no_ntfs[34 * 512 + 3] = b'X';
        let e = err(volumes(&no_ntfs));
        assert!(e.contains("looked at: GPT partition 1"), "{e}");
        let mut no_header = gpt_disk(128, 128);
        no_header[512] = b'X';
        assert!(err(volumes(&no_header)).contains("EFI PART"));
    }

    #[test]
    fn partition_window() {
        let data = patterned(1000, 5);
        let mut p = Partition::new(Cursor::new(data.clone()), 100, 50);
        let mut out = Vec::new();
        p.read_to_end(&mut out).expect("reads");
        assert_eq!(out, &data[100..150]);
        assert_eq!(p.seek(SeekFrom::End(-10)).expect("seeks"), 40);
        let mut buf = [0u8; 64];
        assert_eq!(p.read(&mut buf).expect("reads"), 10);
        assert_eq!(&buf[..10], &data[140..150]);
        assert!(p.seek(SeekFrom::Current(-100)).is_err());
    }
}
