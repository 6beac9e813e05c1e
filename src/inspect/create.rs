//! `appattach image create`: an app attach VHDX or VHD from a package, laid out as msixmgr
//! lays it out (`\<root>\<PackageFullName>\<expanded package>` on a GPT disk with one NTFS
//! partition), built with Debian's tools: `mkntfs` (ntfs-3g), `wimcapture`/`wimapply`
//! (wimtools), `sfdisk` (fdisk) and `qemu-img` (qemu-utils).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::image::{self, ImageContents};
use super::{Error, Result};
use super::{package, tools};

const MIB: u64 = 1 << 20;

/// The container of the image made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// VHDX (Windows 8 and later).
    Vhdx,
    /// VHD.
    Vhd,
}

impl DiskFormat {
    /// The format from a file name's extension (`.vhdx`, `.vhd`), if it says one.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
        match ext.as_str() {
            "vhdx" => Some(Self::Vhdx),
            "vhd" => Some(Self::Vhd),
            _ => None,
        }
    }

    /// `qemu-img`'s name of the format.
    fn qemu_name(self) -> &'static str {
        match self {
            Self::Vhdx => "vhdx",
            Self::Vhd => "vpc",
        }
    }

    /// `qemu-img`'s creation options for the format.
    fn qemu_options(self, fixed: bool) -> String {
        let subformat = if fixed { "fixed" } else { "dynamic" };
        match self {
            Self::Vhdx => format!("subformat={subformat}"),
            // Without force_size, qemu rounds a VHD's size to a CHS geometry.
            Self::Vhd => format!("subformat={subformat},force_size=on"),
        }
    }
}

/// What to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// The package (`.msix` or `.appx`; not a bundle).
    pub package: PathBuf,
    /// VHDX or VHD.
    pub format: DiskFormat,
    /// The image file to write; it must not exist yet.
    pub out: PathBuf,
    /// The folder at the volume's root that holds the package folder; the package's Name
    /// when `None`.
    pub root: Option<String>,
    /// A fixed-size disk rather than a dynamic one.
    pub fixed: bool,
}

/// What was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateReport {
    /// The image file written.
    pub out: PathBuf,
    /// As read back: `VHDX`, `VHD (dynamic)`, `VHD (fixed)`.
    pub disk_format: String,
    /// Size of the NTFS volume, in bytes.
    pub volume_bytes: u64,
    /// The package's full name.
    pub package_full_name: String,
    /// Where the package folder is in the volume, `\<root>\<PackageFullName>`.
    pub relative_path: String,
}

/// Makes an app attach image of one package, telling each step through `progress`, then
/// reads it back to check it holds exactly that package.
pub fn create_image(opts: &CreateOptions, progress: &mut dyn FnMut(&str)) -> Result<CreateReport> {
    let file = package::read_package(&opts.package)?;
    let at = opts.package.display().to_string();
    if file.kind.is_bundle() {
        return Err(Error::new(
            at,
            "is a bundle: an app attach image holds one package; pass the .msix for the \
             architecture the hosts run",
        ));
    }
    let full_name = file.facts.full_name;
    check_folder_name(&full_name, "package full name")?;
    let root = opts.root.clone().unwrap_or_else(|| file.facts.name.clone());
    check_folder_name(&root, "root folder")?;
    let out_at = opts.out.display().to_string();
    check_out(&opts.out)?;
    progress(&format!("package {full_name}"));

    let tmp = tempfile::Builder::new()
        .prefix("appattach-image-")
        .tempdir()
        .map_err(|e| Error::new("temporary folder", format!("cannot create: {e}")))?;
    let staging = tmp.path().join("staging");
    let folder = staging.join(&root).join(&full_name);
    fs::create_dir_all(&folder).map_err(|e| io_error(&folder, "cannot create", e))?;
    let bytes = package::expand_to(&opts.package, &folder)?;
    let files = count_entries(&staging)?;
    progress(&format!(
        "expanded {files} files and folders, {bytes} bytes, into \\{root}\\{full_name}"
    ));

    let volume_bytes = volume_size(bytes, files);
    let volume = tmp.path().join("volume.img");
    make_volume(&volume, volume_bytes, &root, &staging, tmp.path())?;
    progress(&format!(
        "made a {} MiB NTFS volume holding the package",
        volume_bytes / MIB
    ));

    let disk = tmp.path().join("disk.raw");
    make_disk(&disk, &volume, volume_bytes)?;
    progress("partitioned the disk (GPT, one basic data partition at 1 MiB)");

    let mut partial = Partial::new(&opts.out);
    convert(&disk, partial.path(), opts.format, opts.fixed)?;
    progress(&format!("wrote {out_at}"));

    let relative_path = format!("\\{root}\\{full_name}");
    let contents = image::read_image_file(partial.path())?;
    check_contents(&contents, &relative_path, &folder).map_err(|e| e.within(&out_at))?;
    partial.keep()?;
    progress(&format!(
        "read it back: {relative_path} on {}",
        contents.volume
    ));
    Ok(CreateReport {
        out: opts.out.clone(),
        disk_format: contents.disk_format,
        volume_bytes,
        package_full_name: full_name,
        relative_path,
    })
}

/// An error unless `name` can be one NTFS folder name that Windows accepts.
fn check_folder_name(name: &str, what: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.chars().count() > 255
        || name == "."
        || name == ".."
        || name.ends_with(['.', ' '])
        || name
            .chars()
            .any(|c| c.is_control() || "\\/:*?\"<>|".contains(c));
    if bad {
        return Err(Error::new(
            format!("{what} {name:?}"),
            "is not a Windows folder name (1 to 255 characters, none of \\ / : * ? \" < > |, \
             not ending with a dot or a space)",
        ));
    }
    Ok(())
}

/// An error unless `out` can be written: it does not exist and its folder does.
fn check_out(out: &Path) -> Result<()> {
    let at = out.display();
    if out.symlink_metadata().is_ok() {
        return Err(Error::new(
            at,
            "exists already: remove it or choose another file",
        ));
    }
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => Err(Error::new(
            at,
            format!("its folder {} does not exist", p.display()),
        )),
        _ => Ok(()),
    }
}

/// Most files and folders an image is made of.
const MAX_ENTRIES: u64 = 1_000_000;

/// How many files and folders are below `dir`.
fn count_entries(dir: &Path) -> Result<u64> {
    let mut count = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| io_error(&dir, "cannot list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, "cannot list", e))?;
            count += 1;
            if count > MAX_ENTRIES {
                return Err(Error::new(
                    dir.display(),
                    format!("the package expands to more than {MAX_ENTRIES} files"),
                ));
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    Ok(count)
}

/// Largest volume made (the VHDX maximum).
const MAX_VOLUME: u64 = 64 << 40;

/// The volume size for `bytes` of files in `files` files and folders: each file's last
/// cluster and MFT record, a fifth more, and 4 MiB for the log and the metadata files,
/// rounded up to a MiB, at least 8 MiB (and at most 64 TiB).
pub fn volume_size(bytes: u64, files: u64) -> u64 {
    let used = bytes.saturating_add(files.saturating_mul(5 << 10));
    let sized = used.saturating_add(used / 5).saturating_add(4 * MIB);
    sized
        .min(MAX_VOLUME)
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .max(8 * MIB)
}

/// An NTFS volume image of `bytes` at `path` labelled `label`, holding `staging`'s tree.
fn make_volume(path: &Path, bytes: u64, label: &str, staging: &Path, tmp: &Path) -> Result<()> {
    sparse_file(path, bytes)?;
    let label: String = label.chars().take(32).collect();
    run(
        "mkntfs",
        &[
            "-F".as_ref(),
            "-Q".as_ref(),
            "-q".as_ref(),
            "-L".as_ref(),
            label.as_ref(),
            "--sector-size".as_ref(),
            "512".as_ref(),
            "--partition-start".as_ref(),
            "2048".as_ref(),
            path.as_os_str(),
        ],
        None,
    )?;
    let wim = tmp.join("package.wim");
    run(
        "wimcapture",
        &[
            staging.as_os_str(),
            wim.as_os_str(),
            "appattach".as_ref(),
            "--compress=none".as_ref(),
        ],
        None,
    )?;
    run(
        "wimapply",
        &[wim.as_os_str(), "1".as_ref(), path.as_os_str()],
        None,
    )
}

/// A raw GPT disk at `disk` with one basic data partition at 1 MiB holding `volume`.
fn make_disk(disk: &Path, volume: &Path, volume_bytes: u64) -> Result<()> {
    sparse_file(disk, volume_bytes + 2 * MIB)?;
    let script = format!(
        "label: gpt\nstart=2048, size={}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
        volume_bytes / 512
    );
    run(
        "sfdisk",
        &[
            "--quiet".as_ref(),
            "--no-reread".as_ref(),
            "--no-tell-kernel".as_ref(),
            disk.as_os_str(),
        ],
        Some(script.as_bytes()),
    )?;
    copy_sparse(volume, disk, MIB)
}

/// Copies `from` into `to` at `offset`, leaving holes where `from` reads as zeros.
fn copy_sparse(from: &Path, to: &Path, offset: u64) -> Result<()> {
    let mut src = File::open(from).map_err(|e| io_error(from, "cannot open", e))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .open(to)
        .map_err(|e| io_error(to, "cannot open", e))?;
    let mut buf = vec![0u8; MIB as usize];
    let mut at = offset;
    loop {
        let n = read_full(&mut src, &mut buf).map_err(|e| io_error(from, "cannot read", e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        if chunk.iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(at))
                .and_then(|_| dst.write_all(chunk))
                .map_err(|e| io_error(to, "cannot write", e))?;
        }
        at += n as u64;
    }
}

/// Reads until `buf` is full or the end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match r.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A sparse file of `bytes` at `path`.
fn sparse_file(path: &Path, bytes: u64) -> Result<()> {
    File::create(path)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| io_error(path, "cannot create", e))
}

/// `qemu-img convert` of the raw `disk` to `out`.
fn convert(disk: &Path, out: &Path, format: DiskFormat, fixed: bool) -> Result<()> {
    let options = format.qemu_options(fixed);
    run(
        "qemu-img",
        &[
            "convert".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "raw".as_ref(),
            "-O".as_ref(),
            format.qemu_name().as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            disk.as_os_str(),
            out.as_os_str(),
        ],
        None,
    )
}

/// An error unless the image read back holds exactly the package at `relative_path`,
/// with the manifest and signature expanded into `folder`.
fn check_contents(contents: &ImageContents, relative_path: &str, folder: &Path) -> Result<()> {
    let [found] = contents.packages.as_slice() else {
        return Err(Error::new(
            &contents.volume,
            format!(
                "read back {} package folders ({}), not the one written",
                contents.packages.len(),
                contents
                    .packages
                    .iter()
                    .map(|p| p.relative_path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    if found.relative_path != relative_path {
        return Err(Error::new(
            &contents.volume,
            format!(
                "read back the package at {}, not at {relative_path}",
                found.relative_path
            ),
        ));
    }
    let manifest = read_expanded(folder, "AppxManifest.xml")?;
    let signature = read_expanded(folder, "AppxSignature.p7x")?;
    if Some(&found.manifest) != manifest.as_ref() || found.signature != signature {
        return Err(Error::new(
            relative_path,
            "the manifest or signature read back differs from the package's",
        ));
    }
    Ok(())
}

/// The expanded file `name` of `folder`, if there is one.
fn read_expanded(folder: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = folder.join(name);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path, "cannot read", e)),
    }
}

/// The output file while it is being written: removed unless kept.
struct Partial {
    out: PathBuf,
    path: PathBuf,
    kept: bool,
}

impl Partial {
    fn new(out: &Path) -> Self {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            out: out.to_path_buf(),
            path: out.with_file_name(format!(".{name}.partial")),
            kept: false,
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the partial file to the output path.
    fn keep(&mut self) -> Result<()> {
        fs::rename(&self.path, &self.out).map_err(|e| io_error(&self.out, "cannot write", e))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(path.display(), format!("{what}: {e}"))
}

/// Most bytes of a tool's stderr put in an error.
const STDERR_BYTES: usize = 4000;

/// Runs `tool` with `args` (and `stdin`), an error naming the tool, its arguments and its
/// stderr unless it succeeds.
fn run(tool: &str, args: &[&OsStr], stdin: Option<&[u8]>) -> Result<()> {
    let shown = std::iter::once(OsStr::new(tool))
        .chain(args.iter().copied())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    let Some(program) = tools::locate(tool) else {
        return Err(Error::new(
            format!("{tool} not found"),
            tools::install_advice(tool),
        ));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(&shown, format!("cannot start: {e}")))?;
    // A tool that fails early closes its input: its status and stderr say more than the
    // broken pipe, so a write error is reported only when the tool succeeds.
    let written = match (stdin, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => pipe.write_all(input),
        _ => Ok(()),
    };
    let output = child
        .wait_with_output()
        .map_err(|e| Error::new(&shown, format!("cannot wait for it: {e}")))?;
    if output.status.success() {
        return written.map_err(|e| Error::new(&shown, format!("cannot write its input: {e}")));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let skip = stderr.len().saturating_sub(STDERR_BYTES);
    let tail = stderr
        .char_indices()
        .find(|(i, _)| *i >= skip)
        .map_or("", |(i, _)| stderr.get(i..).unwrap_or_default());
    Err(Error::new(
        shown,
        format!("failed ({}): {}", output.status, tail.trim()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_size_has_headroom() {
        assert_eq!(volume_size(0, 0), 8 * MIB);
        let size = volume_size(100 * MIB, 1000);
        assert_eq!(size % MIB, 0);
        assert!(size >= 100 * MIB + 1000 * (5 << 10) + 20 * MIB, "{size}");
        assert_eq!(volume_size(u64::MAX, u64::MAX) % MIB, 0);
    }

    #[test]
    fn folder_names() {
        assert!(check_folder_name("Contoso.Notes_1.0.0.0_x64__8wekyb3d8bbwe", "x").is_ok());
        for bad in [
            "", ".", "..", "a\\b", "a/b", "a:b", "a.", "a ", "a\u{1}", "a|b",
        ] {
            assert!(check_folder_name(bad, "root").is_err(), "{bad:?}");
        }
        assert!(check_folder_name(&"a".repeat(256), "root").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(
            DiskFormat::from_path(Path::new("a/b.VHDX")),
            Some(DiskFormat::Vhdx)
        );
        assert_eq!(
            DiskFormat::from_path(Path::new("b.vhd")),
            Some(DiskFormat::Vhd)
        );
        assert_eq!(DiskFormat::from_path(Path::new("b.cim")), None);
        assert_eq!(
            DiskFormat::Vhd.qemu_options(false),
            "subformat=dynamic,force_size=on"
        );
        assert_eq!(DiskFormat::Vhdx.qemu_options(true), "subformat=fixed");
    }

    #[test]
    fn tool_failures_say_which_tool_and_why() {
        let e = run("no-such-tool-for-appattach", &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-tool-for-appattach not found: it is not on PATH"),
            "{e}"
        );
        let e = run(
            "sh",
            &[
                "-c".as_ref(),
                "cat >/dev/null; echo broken >&2; exit 3".as_ref(),
            ],
            Some(b"input"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("sh -c cat") && e.contains("broken") && e.contains('3'),
            "{e}"
        );
        assert!(run("sh", &["-c".as_ref(), "exit 0".as_ref()], None).is_ok());
    }

    #[test]
    fn out_must_not_exist() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("x.vhdx");
        assert!(check_out(&out).is_ok());
        fs::write(&out, b"").expect("writes");
        assert!(check_out(&out).is_err());
        assert!(check_out(&tmp.path().join("no").join("x.vhdx")).is_err());
    }

    #[test]
    fn sparse_copy_keeps_data() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (from, to) = (tmp.path().join("from"), tmp.path().join("to"));
        let mut data = vec![0u8; 3 * MIB as usize];
        data[MIB as usize + 5] = 9;
        data[3 * MIB as usize - 1] = 7;
        fs::write(&from, &data).expect("writes");
        sparse_file(&to, 4 * MIB).expect("creates");
        copy_sparse(&from, &to, MIB).expect("copies");
        let out = fs::read(&to).expect("reads");
        assert_eq!(out.len() as u64, 4 * MIB);
        assert_eq!(&out[MIB as usize..], data.as_slice());
    }
}
