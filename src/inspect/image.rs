//! App attach images: the NTFS volume of a VHDX/VHD and the package folders at its root;
//! and a CimFS image's file set.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::NtfsFileNamespace;
use ntfs::{Ntfs, NtfsAttributeType, NtfsError, NtfsFile};
use serde::Serialize;

use super::disk::{Partition, VirtualDisk, Volume};
use super::{Error, Result};

/// One package folder found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPackage {
    /// Path of the package folder inside the volume, `\<root>\<PackageFullName>`.
    pub relative_path: String,
    /// The folder's `AppxManifest.xml`.
    pub manifest: Vec<u8>,
    /// The folder's `AppxSignature.p7x`, when it has one.
    pub signature: Option<Vec<u8>>,
    /// The folder's footprint files and its files checked against its block map.
    pub contents: FolderContents,
}

/// What a package folder holds besides its manifest, for verification: the footprint
/// files the signature has digests of, and every file of the block map checked against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderContents {
    /// `AppxBlockMap.xml`, when there is one.
    pub block_map: Option<Vec<u8>>,
    /// `AppxMetadata\CodeIntegrity.cat`, when there is one.
    pub code_integrity: Option<Vec<u8>>,
    /// `[Content_Types].xml`, when there is one (msixmgr leaves it out).
    pub content_types: Option<Vec<u8>>,
    /// Files of the block map found and checked.
    pub files: u64,
    /// Their blocks hashed.
    pub blocks: u64,
    /// Files missing or differing from the block map, or a block map that cannot be read.
    pub problems: Vec<super::verify::Problem>,
}

/// What an image holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageContents {
    /// How the disk is stored: `VHDX`, `VHD (fixed)`, `VHD (dynamic)` (or `raw`).
    pub disk_format: String,
    /// Where the volume is: `GPT partition 1`, `MBR partition 1` or `no partition table`.
    pub volume: String,
    /// The package folders found.
    pub packages: Vec<FoundPackage>,
}

/// A CimFS image's file set, as found beside the `.cim` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CimFileSet {
    /// Size of the `.cim` file.
    pub cim_bytes: u64,
    /// The `objectid_*` files beside it.
    pub object_id_files: Vec<String>,
    /// The `region_*` files beside it.
    pub region_files: Vec<String>,
}

/// Bounds on what is read out of an untrusted image.
pub mod limits {
    /// Largest `AppxManifest.xml` read.
    pub const MANIFEST_BYTES: u64 = 10 << 20;
    /// Largest `AppxSignature.p7x` read.
    pub const SIGNATURE_BYTES: u64 = 1 << 20;
    /// Most entries read from one directory.
    pub const DIRECTORY_ENTRIES: usize = 4_096;
    /// Most directories looked into, over the whole volume.
    pub const DIRECTORIES: usize = 4_096;
    /// Most package folders in one image.
    pub const PACKAGES: usize = 256;
    /// Most NTFS volumes read on one disk.
    pub const VOLUMES: usize = 16;
    /// Largest index record a directory may declare (NTFS writes 4 KiB).
    pub const INDEX_RECORD_BYTES: u32 = 64 << 10;
    /// Most bytes one step (a directory listing, a lookup, a file) may read from the
    /// volume: this ends a directory index whose nodes loop.
    pub const STEP_BYTES: u64 = 64 << 20;
    /// Most reads one step may make.
    pub const STEP_READS: u64 = 1 << 20;
}

const MANIFEST: &str = "AppxManifest.xml";
const SIGNATURE: &str = "AppxSignature.p7x";

/// Reads an image file: [`read_image`], errors said to be in the file.
pub fn read_image_file(path: &Path) -> Result<ImageContents> {
    let file =
        File::open(path).map_err(|e| Error::new(path.display(), format!("cannot open: {e}")))?;
    read_image(BufReader::with_capacity(64 << 10, file)).map_err(|e| e.within(path.display()))
}

/// Reads a disk image (VHDX, VHD, or raw): finds its NTFS volumes and, on them, the
/// package folders as msixmgr lays them out (`\<root>\<PackageFullName>`, or a package
/// folder right at the root), with each folder's manifest and signature. An image with
/// no package folder is not an error here: `packages` is empty.
pub fn read_image<R: Read + Seek>(r: R) -> Result<ImageContents> {
    let mut disk = VirtualDisk::open(r)?;
    let format = disk.format();
    let volumes = disk
        .volumes()
        .map_err(|e| e.within(format!("{format} disk")))?;
    if volumes.len() > limits::VOLUMES {
        return Err(Error::new(
            format!("{format} disk"),
            format!(
                "{} NTFS volumes, more than the {} this reader reads",
                volumes.len(),
                limits::VOLUMES
            ),
        ));
    }
    let mut packages = Vec::new();
    let mut holding = Vec::new();
    for volume in &volumes {
        let at = format!(
            "NTFS volume ({} at 0x{:x})",
            volume.description, volume.offset
        );
        let found = packages_in_volume(&mut disk, volume).map_err(|e| e.within(&at))?;
        if !found.is_empty() {
            holding.push(volume.description.clone());
        }
        packages.extend(found);
        if packages.len() > limits::PACKAGES {
            return Err(Error::new(
                at,
                format!("more than {} package folders", limits::PACKAGES),
            ));
        }
    }
    let volume = if holding.is_empty() {
        volumes
            .first()
            .map(|v| v.description.clone())
            .unwrap_or_default()
    } else {
        holding.join(", ")
    };
    Ok(ImageContents {
        disk_format: format.to_string(),
        volume,
        packages,
    })
}

/// The package folders of one volume. The `ntfs` crate is not hardened against every
/// malformed volume; a panic inside it is turned into an error here rather than taking
/// the caller down.
fn packages_in_volume<R: Read + Seek>(
    disk: &mut VirtualDisk<R>,
    volume: &Volume,
) -> Result<Vec<FoundPackage>> {
    let mut fs = Budget::new(Partition::of(disk, volume));
    panic::catch_unwind(AssertUnwindSafe(|| walk_volume(&mut fs))).unwrap_or_else(|_| {
        Err(Error::new(
            "NTFS structures",
            "are malformed: the NTFS reader gave up on them",
        ))
    })
}

/// Reads the volume's root and the folders below it, at most two levels down.
fn walk_volume<T: Read + Seek>(fs: &mut Budget<T>) -> Result<Vec<FoundPackage>> {
    let mut ntfs = Ntfs::new(fs).map_err(|e| fs.error("boot sector", e))?;
    fs.refill();
    ntfs.read_upcase_table(fs)
        .map_err(|e| fs.error("$UpCase", e))?;
    let mut walk = Walk {
        ntfs: &ntfs,
        directories: 0,
        found: Vec::new(),
    };
    let root = walk.file(fs, 5, "\\")?;
    for (name, record) in walk.subdirectories(fs, &root, "")? {
        if name.starts_with('$') || name.eq_ignore_ascii_case("System Volume Information") {
            continue;
        }
        let path = format!("\\{name}");
        let dir = walk.file(fs, record, &path)?;
        if walk.try_package(fs, &dir, &path)? {
            continue;
        }
        for (child, record) in walk.subdirectories(fs, &dir, &path)? {
            let path = format!("{path}\\{child}");
            let dir = walk.file(fs, record, &path)?;
            walk.try_package(fs, &dir, &path)?;
        }
    }
    Ok(walk.found)
}

/// The state of a walk over one volume.
struct Walk<'n> {
    ntfs: &'n Ntfs,
    directories: usize,
    found: Vec<FoundPackage>,
}

impl<'n> Walk<'n> {
    /// File record `record`, which is `path`.
    fn file<T: Read + Seek>(
        &self,
        fs: &mut Budget<T>,
        record: u64,
        path: &str,
    ) -> Result<NtfsFile<'n>> {
        fs.refill();
        self.ntfs
            .file(fs, record)
            .map_err(|e| fs.error(&format!("{path} (file record {record})"), e))
    }

    /// The subdirectories of `dir` (at `path`): name and file record number, in index
    /// order, DOS short names left out.
    fn subdirectories<T: Read + Seek>(
        &mut self,
        fs: &mut Budget<T>,
        dir: &NtfsFile<'n>,
        path: &str,
    ) -> Result<Vec<(String, u64)>> {
        let shown = if path.is_empty() { "\\" } else { path };
        self.enter(shown)?;
        check_index_root(fs, dir, shown)?;
        fs.refill();
        let index = dir
            .directory_index(fs)
            .map_err(|e| fs.error(&format!("{shown} index"), e))?;
        let mut entries = index.entries();
        let mut found = Vec::new();
        let mut seen = 0usize;
        while let Some(entry) = entries.next(fs) {
            seen += 1;
            if seen > limits::DIRECTORY_ENTRIES {
                return Err(Error::new(
                    shown,
                    format!("has more than {} entries", limits::DIRECTORY_ENTRIES),
                ));
            }
            let entry = entry.map_err(|e| fs.error(&format!("{shown} index"), e))?;
            let Some(key) = entry.key() else { continue };
            let key = key.map_err(|e| fs.error(&format!("{shown} index entry"), e))?;
            let name = key.name().to_string_lossy();
            if !key.is_directory() || key.namespace() == NtfsFileNamespace::Dos || name == "." {
                continue;
            }
            let record = entry.file_reference().file_record_number();
            if !found.iter().any(|(_, r)| *r == record) {
                found.push((name, record));
            }
        }
        Ok(found)
    }

    /// Counts one more directory looked into.
    fn enter(&mut self, path: &str) -> Result<()> {
        self.directories += 1;
        if self.directories > limits::DIRECTORIES {
            return Err(Error::new(
                path,
                format!(
                    "more than {} directories looked into: not an app attach image",
                    limits::DIRECTORIES
                ),
            ));
        }
        Ok(())
    }

    /// When `dir` holds `AppxManifest.xml`, records it as a package folder.
    fn try_package<T: Read + Seek>(
        &mut self,
        fs: &mut Budget<T>,
        dir: &NtfsFile<'n>,
        path: &str,
    ) -> Result<bool> {
        self.enter(path)?;
        let Some(manifest) = self.child(fs, dir, path, MANIFEST)? else {
            return Ok(false);
        };
        let at = format!("{path}\\{MANIFEST}");
        let manifest = read_data(fs, &manifest, &at, limits::MANIFEST_BYTES)?;
        let signature = match self.child(fs, dir, path, SIGNATURE)? {
            Some(file) => {
                let at = format!("{path}\\{SIGNATURE}");
                Some(read_data(fs, &file, &at, limits::SIGNATURE_BYTES)?)
            }
            None => None,
        };
        let contents = self.contents(fs, dir, path)?;
        self.found.push(FoundPackage {
            relative_path: path.to_string(),
            manifest,
            signature,
            contents,
        });
        if self.found.len() > limits::PACKAGES {
            return Err(Error::new(
                path,
                format!("more than {} package folders", limits::PACKAGES),
            ));
        }
        Ok(true)
    }

    /// The footprint files of the package folder `dir` (at `path`), and each file of its
    /// block map checked against it, streamed.
    fn contents<T: Read + Seek>(
        &self,
        fs: &mut Budget<T>,
        dir: &NtfsFile<'n>,
        path: &str,
    ) -> Result<FolderContents> {
        use super::verify::blockmap;
        let mut out = FolderContents::default();
        let footprint = |name: &str, limit: u64, fs: &mut Budget<T>| -> Result<Option<Vec<u8>>> {
            match self.find(fs, dir, path, name)? {
                Some(file) => read_data(fs, &file, &format!("{path}\\{name}"), limit).map(Some),
                None => Ok(None),
            }
        };
        out.block_map = footprint(blockmap::NAME, blockmap::limits::BYTES, fs)?;
        out.code_integrity = footprint(
            "AppxMetadata\\CodeIntegrity.cat",
            limits::MANIFEST_BYTES,
            fs,
        )?;
        out.content_types = footprint("[Content_Types].xml", limits::MANIFEST_BYTES, fs)?;
        let Some(bytes) = &out.block_map else {
            return Ok(out);
        };
        let map = match blockmap::parse(bytes) {
            Ok(map) => map,
            Err(p) => {
                out.problems.push(p);
                return Ok(out);
            }
        };
        for f in &map.files {
            let shown = f.name.clone();
            let Some(file) = self.find(fs, dir, path, &f.name)? else {
                out.problems.push(super::verify::Problem::new(
                    super::verify::Code::MissingRequiredFile,
                    &shown,
                    format!("is in the block map but not in the package folder {path}"),
                ));
                continue;
            };
            fs.refill();
            let item = file
                .data(fs, "")
                .transpose()
                .map_err(|e| fs.error(&shown, e))?;
            let checked = match &item {
                Some(item) => {
                    let attribute = item.to_attribute().map_err(|e| fs.error(&shown, e))?;
                    let value = attribute.value(fs).map_err(|e| fs.error(&shown, e))?;
                    let mut reader = FileData {
                        fs: &mut *fs,
                        value,
                    };
                    blockmap::check_file(f, map.hash, &mut reader, &shown)
                }
                None => blockmap::check_file(f, map.hash, &mut io::empty(), &shown),
            };
            match checked {
                Ok(c) => {
                    out.files += 1;
                    out.blocks += c.blocks;
                }
                Err(p) => out.problems.push(p),
            }
        }
        Ok(out)
    }

    /// The file at `relative` (`\` between folders) below `dir` (at `path`), each part
    /// looked up case-insensitively; `None` when a part is missing or the file is a
    /// directory.
    fn find<T: Read + Seek>(
        &self,
        fs: &mut Budget<T>,
        dir: &NtfsFile<'n>,
        path: &str,
        relative: &str,
    ) -> Result<Option<NtfsFile<'n>>> {
        let parts: Vec<&str> = relative
            .split(['\\', '/'])
            .filter(|p| !p.is_empty())
            .collect();
        let Some((last, folders)) = parts.split_last() else {
            return Ok(None);
        };
        let mut current: Option<NtfsFile<'n>> = None;
        let mut at = path.to_string();
        for folder in folders {
            let parent = current.as_ref().unwrap_or(dir);
            let Some(record) = self.lookup(fs, parent, &at, folder)? else {
                return Ok(None);
            };
            at = format!("{at}\\{folder}");
            let next = self.file(fs, record, &at)?;
            if !next.is_directory() {
                return Ok(None);
            }
            current = Some(next);
        }
        self.child(fs, current.as_ref().unwrap_or(dir), &at, last)
    }

    /// The file `name` in `dir` (at `path`), looked up case-insensitively, if there is one
    /// and it is not a directory.
    fn child<T: Read + Seek>(
        &self,
        fs: &mut Budget<T>,
        dir: &NtfsFile<'n>,
        path: &str,
        name: &str,
    ) -> Result<Option<NtfsFile<'n>>> {
        let Some(record) = self.lookup(fs, dir, path, name)? else {
            return Ok(None);
        };
        let file = self.file(fs, record, &format!("{path}\\{name}"))?;
        Ok((!file.is_directory()).then_some(file))
    }

    /// The file record of the entry `name` in `dir` (at `path`), looked up
    /// case-insensitively, if there is one.
    fn lookup<T: Read + Seek>(
        &self,
        fs: &mut Budget<T>,
        dir: &NtfsFile<'n>,
        path: &str,
        name: &str,
    ) -> Result<Option<u64>> {
        check_index_root(fs, dir, path)?;
        fs.refill();
        let at = format!("{path}\\{name}");
        let index = dir
            .directory_index(fs)
            .map_err(|e| fs.error(&format!("{path} index"), e))?;
        let mut finder = index.finder();
        match NtfsFileNameIndex::find(&mut finder, self.ntfs, fs, name) {
            None => Ok(None),
            Some(entry) => {
                let entry = entry.map_err(|e| fs.error(&at, e))?;
                Ok(Some(entry.file_reference().file_record_number()))
            }
        }
    }
}

/// A file's data as a reader, each read a step of its own (the budget refilled): a file
/// of gigabytes is read through, while a loop in the volume's structures still ends.
struct FileData<'a, 'n, 'f, T> {
    fs: &'a mut Budget<T>,
    value: ntfs::attribute_value::NtfsAttributeValue<'n, 'f>,
}

impl<T: Read + Seek> Read for FileData<'_, '_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ntfs::NtfsReadSeek;
        self.fs.refill();
        self.value
            .read(self.fs, buf)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// An error unless `dir`'s `$I30` index root is sound where the `ntfs` crate trusts it:
/// its index record size (it allocates that much per node) and its entries' range.
fn check_index_root<T: Read + Seek>(
    fs: &mut Budget<T>,
    dir: &NtfsFile<'_>,
    path: &str,
) -> Result<()> {
    fs.refill();
    let at = format!("{path} index root");
    let mut attributes = dir.attributes();
    while let Some(item) = attributes.next(fs) {
        let item = item.map_err(|e| fs.error(&at, e))?;
        let attribute = item.to_attribute().map_err(|e| fs.error(&at, e))?;
        if attribute.ty().ok() != Some(NtfsAttributeType::IndexRoot) {
            continue;
        }
        if attribute
            .name()
            .map(|n| n.to_string_lossy())
            .ok()
            .as_deref()
            != Some("$I30")
        {
            continue;
        }
        let value = attribute.value(fs).map_err(|e| fs.error(&at, e))?;
        let ntfs::attribute_value::NtfsAttributeValue::Resident(value) = value else {
            return Err(Error::new(&at, "is not resident"));
        };
        return check_index_root_bytes(value.data(), &at);
    }
    Err(Error::new(
        &at,
        "is missing: the directory has no $I30 index",
    ))
}

/// [`check_index_root`] on the attribute's bytes: a 16-byte index root header, then a
/// node header (entries offset, index size, allocated size, flags).
fn check_index_root_bytes(b: &[u8], at: &str) -> Result<()> {
    let le32 = |off: usize| {
        b.get(off..off + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let (Some(record_size), Some(entries), Some(size)) = (le32(8), le32(16), le32(20)) else {
        return Err(Error::new(at, format!("is only {} bytes", b.len())));
    };
    if !record_size.is_power_of_two() || !(512..=limits::INDEX_RECORD_BYTES).contains(&record_size)
    {
        return Err(Error::new(
            at,
            format!(
                "index record size {record_size} is not a power of two from 512 to {}",
                limits::INDEX_RECORD_BYTES
            ),
        ));
    }
    if entries > size || 16 + size as usize > b.len() {
        return Err(Error::new(
            at,
            format!(
                "entries at {entries}..{size} do not fit the {}-byte attribute",
                b.len()
            ),
        ));
    }
    Ok(())
}

/// The unnamed data stream of `file` (at `at`), at most `limit` bytes.
fn read_data<T: Read + Seek>(
    fs: &mut Budget<T>,
    file: &NtfsFile<'_>,
    at: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    fs.refill();
    let Some(item) = file.data(fs, "") else {
        return Ok(Vec::new());
    };
    let item = item.map_err(|e| fs.error(at, e))?;
    let attribute = item.to_attribute().map_err(|e| fs.error(at, e))?;
    let value = attribute.value(fs).map_err(|e| fs.error(at, e))?;
    let len = value.len();
    if len > limit {
        return Err(Error::new(
            at,
            format!("is {len} bytes, more than the {limit} read"),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let read = value
        .attach(fs)
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::new(at, format!("cannot read: {e}")));
    read?;
    if bytes.len() as u64 != len {
        return Err(Error::new(
            at,
            format!("holds {} bytes, its size says {len}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// A reader that fails once a step has read too much: the `ntfs` crate follows the index
/// nodes a volume points it to, and a crafted volume can make them loop.
struct Budget<R> {
    inner: R,
    bytes: u64,
    reads: u64,
}

impl<R> Budget<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            bytes: limits::STEP_BYTES,
            reads: limits::STEP_READS,
        }
    }

    /// Starts a new step with a full budget.
    fn refill(&mut self) {
        self.bytes = limits::STEP_BYTES;
        self.reads = limits::STEP_READS;
    }

    /// An `ntfs` crate error at `at`, said plainly when the budget ran out.
    fn error(&self, at: &str, e: NtfsError) -> Error {
        if self.bytes == 0 || self.reads == 0 {
            Error::new(
                at,
                format!(
                    "reading it took more than {} MiB or {} reads: its index nodes may loop",
                    limits::STEP_BYTES >> 20,
                    limits::STEP_READS
                ),
            )
        } else {
            Error::new(at, e)
        }
    }
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reads == 0 || self.bytes == 0 {
            self.reads = 0;
            return Err(io::Error::other("read budget of this step spent"));
        }
        self.reads -= 1;
        let n = usize::try_from(self.bytes).map_or(buf.len(), |b| b.min(buf.len()));
        let read = self.inner.read(buf.get_mut(..n).unwrap_or_default())?;
        self.bytes -= read as u64;
        Ok(read)
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

/// Checks a CimFS image's file set: the `.cim` file, and the `objectid_*` and `region_*`
/// files that must be beside it. The CIM's contents are not read.
pub fn check_cim(path: &Path) -> Result<CimFileSet> {
    let at = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::new(&at, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(Error::new(&at, "is not a file"));
    }
    if meta.len() == 0 {
        return Err(Error::new(&at, "is empty"));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (object_id_files, region_files) = cim_companions(folder)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (files, prefix) in [(&object_id_files, "objectid_"), (&region_files, "region_")] {
        if files.is_empty() {
            return Err(Error::new(
                at,
                format!(
                    "no {prefix}* file beside {name}: copy the whole CimFS file set, not only \
                     the .cim"
                ),
            ));
        }
    }
    Ok(CimFileSet {
        cim_bytes: meta.len(),
        object_id_files,
        region_files,
    })
}

/// Most files looked at in a CIM's folder.
const CIM_FOLDER_ENTRIES: usize = 100_000;

/// The `objectid_*` and `region_*` files of `folder`, sorted.
fn cim_companions(folder: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let at = folder.display().to_string();
    let entries =
        std::fs::read_dir(folder).map_err(|e| Error::new(&at, format!("cannot list: {e}")))?;
    let (mut object_ids, mut regions) = (Vec::new(), Vec::new());
    for (i, entry) in entries.enumerate() {
        if i >= CIM_FOLDER_ENTRIES {
            return Err(Error::new(
                at,
                format!("has more than {CIM_FOLDER_ENTRIES} entries"),
            ));
        }
        let entry = entry.map_err(|e| Error::new(&at, format!("cannot list: {e}")))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("objectid_") {
            object_ids.push(name);
        } else if lower.starts_with("region_") {
            regions.push(name);
        }
    }
    object_ids.sort();
    regions.sort();
    Ok((object_ids, regions))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// An index root attribute: record size, entries offset and index size.
    fn index_root(record_size: u32, entries: u32, size: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[8..12].copy_from_slice(&record_size.to_le_bytes());
        b[16..20].copy_from_slice(&entries.to_le_bytes());
        b[20..24].copy_from_slice(&size.to_le_bytes());
        b
    }

    #[test]
    fn index_root_checked_before_the_ntfs_crate_trusts_it() {
        assert!(check_index_root_bytes(&index_root(4096, 16, 48, 64), "\\").is_ok());
        let e = check_index_root_bytes(&index_root(u32::MAX, 16, 48, 64), "\\")
            .unwrap_err()
            .to_string();
        assert!(e.contains("index record size 4294967295"), "{e}");
        let e = check_index_root_bytes(&index_root(4096, 40, 16, 64), "\\")
            .unwrap_err()
            .to_string();
        assert!(e.contains("entries at 40..16"), "{e}");
        let e = check_index_root_bytes(&index_root(4096, 16, 4000, 64), "\\")
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not fit the 64-byte attribute"), "{e}");
        assert!(check_index_root_bytes(&[0; 10], "\\").is_err());
    }

    #[test]
    fn budget_ends_a_step() {
        let mut b = Budget::new(Cursor::new(vec![0u8; 16]));
        b.bytes = 10;
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).ok(), Some(8));
        assert_eq!(b.read(&mut buf).ok(), Some(2));
        assert!(b.read(&mut buf).is_err());
        let e = b.error("\\x", NtfsError::Io(io::Error::other("spent")));
        assert!(e.to_string().contains("index nodes may loop"), "{e}");
        b.refill();
        b.seek(SeekFrom::Start(0)).ok();
        assert_eq!(b.read(&mut buf).ok(), Some(8));
    }

    #[test]
    fn garbage_is_an_error() {
        let e = read_image(Cursor::new(vec![7u8; 4096]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("raw disk: sector 0"), "{e}");
        // An NTFS OEM id with nothing behind it.
        let mut bare = vec![0u8; 64 << 10];
        bare[3..11].copy_from_slice(b"NTFS    ");
        let e = read_image(Cursor::new(bare)).unwrap_err().to_string();
        assert!(e.contains("NTFS volume (no partition table at 0x0)"), "{e}");
        assert!(read_image(Cursor::new(Vec::new())).is_err());
    }
}
