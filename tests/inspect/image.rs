//! Images built here with Debian's tools (mkntfs, wimcapture/wimapply, sfdisk, qemu-img),
//! read with `appattach_operator::inspect::image`, and checked against independent readers
//! (`qemu-img info`, `ntfsls`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use appattach_operator::inspect::create::{CreateOptions, DiskFormat, create_image};
use appattach_operator::inspect::disk::VirtualDisk;
use appattach_operator::inspect::image::{check_cim, read_image_file};
use appattach_operator::inspect::tools;

use crate::support::{require_tools, tool};
use tempfile::TempDir;

const FULL_NAME: &str = "Contoso.Notes_1.2.3.0_x64__8wekyb3d8bbwe";
const MIB: u64 = 1 << 20;

/// A small valid manifest.
fn manifest(name: &str, version: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Package xmlns="http://schemas.microsoft.com/appx/manifest/foundation/windows10"
         xmlns:uap="http://schemas.microsoft.com/appx/manifest/uap/windows10">
  <Identity Name="{name}" Publisher="CN=Contoso Ltd, O=Contoso Ltd, C=US" Version="{version}" ProcessorArchitecture="x64"/>
  <Properties>
    <DisplayName>Contoso Notes</DisplayName>
    <PublisherDisplayName>Contoso Ltd</PublisherDisplayName>
    <Logo>Assets\logo.png</Logo>
  </Properties>
  <Dependencies>
    <TargetDeviceFamily Name="Windows.Desktop" MinVersion="10.0.17763.0" MaxVersionTested="10.0.22621.0"/>
  </Dependencies>
  <Resources><Resource Language="en-us"/></Resources>
  <Applications>
    <Application Id="App" Executable="Notes.exe" EntryPoint="Windows.FullTrustApplication">
      <uap:VisualElements DisplayName="Contoso Notes" Description="Notes" BackgroundColor="transparent"
        Square150x150Logo="Assets\logo.png" Square44x44Logo="Assets\logo.png"/>
    </Application>
  </Applications>
</Package>
"#
    )
}

/// Fake signature bytes: only their round trip matters here.
fn signature_bytes() -> Vec<u8> {
    let mut b = b"PKCX".to_vec();
    b.extend((0..3000u32).map(|i| (i * 7 % 251) as u8));
    b
}

/// A staging tree `<root>/<fullname>/...` as msixmgr lays it out.
struct Staging {
    dir: PathBuf,
    manifest: Vec<u8>,
    signature: Vec<u8>,
}

fn staging(tmp: &Path, root: &str) -> Staging {
    let dir = tmp.join("staging");
    let pkg = dir.join(root).join(FULL_NAME);
    fs::create_dir_all(pkg.join("Assets")).unwrap();
    let manifest = manifest("Contoso.Notes", "1.2.3.0").into_bytes();
    let signature = signature_bytes();
    fs::write(pkg.join("AppxManifest.xml"), &manifest).unwrap();
    fs::write(pkg.join("AppxSignature.p7x"), &signature).unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(pkg.join("Notes.exe"), payload).unwrap();
    fs::write(pkg.join("Assets").join("logo.png"), b"\x89PNG fake").unwrap();
    Staging {
        dir,
        manifest,
        signature,
    }
}

/// Runs a tool, panicking with its stderr when it fails.
fn run(name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(tool(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An NTFS volume image of `mib` MiB holding the staging tree.
fn ntfs_volume(tmp: &Path, staging: &Path, mib: u64, start: &str) -> PathBuf {
    let vol = tmp.join("volume.img");
    File::create(&vol).unwrap().set_len(mib * MIB).unwrap();
    run(
        "mkntfs",
        &[
            "-F",
            "-Q",
            "-q",
            "-L",
            "Test",
            "-s",
            "512",
            "-p",
            start,
            s(&vol),
        ],
        None,
    );
    let wim = tmp.join("x.wim");
    run(
        "wimcapture",
        &[s(staging), s(&wim), "test", "--compress=none"],
        None,
    );
    run("wimapply", &[s(&wim), "1", s(&vol)], None);
    vol
}

/// A raw disk with a `label` (`gpt` or `dos`) partition table and the volume at 1 MiB.
fn partitioned(tmp: &Path, vol: &Path, label: &str) -> PathBuf {
    let vol_bytes = fs::metadata(vol).unwrap().len();
    let disk = tmp.join(format!("disk-{label}.raw"));
    File::create(&disk)
        .unwrap()
        .set_len(vol_bytes + 2 * MIB)
        .unwrap();
    let kind = if label == "gpt" {
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    } else {
        "7"
    };
    let script = format!(
        "label: {label}\nstart=2048, size={}, type={kind}\n",
        vol_bytes / 512
    );
    run(
        "sfdisk",
        &["--quiet", "--no-reread", "--no-tell-kernel", s(&disk)],
        Some(&script),
    );
    let bytes = fs::read(vol).unwrap();
    let mut f = OpenOptions::new().write(true).open(&disk).unwrap();
    f.seek(SeekFrom::Start(MIB)).unwrap();
    f.write_all(&bytes).unwrap();
    disk
}

/// `qemu-img convert` of a raw disk to `format` with `options`.
fn convert(raw: &Path, format: &str, options: &str, name: &str) -> PathBuf {
    let out = raw.with_file_name(name);
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", format];
    if !options.is_empty() {
        args.extend(["-o", options]);
    }
    args.extend([s(raw), s(&out)]);
    run("qemu-img", &args, None);
    out
}

/// `qemu-img info`'s format and virtual size, opening the file as `format` (qemu probes a
/// fixed VHD as raw: its only signature is at the end).
fn qemu_info(path: &Path, format: &str) -> (String, u64) {
    let json = run(
        "qemu-img",
        &["info", "-f", format, "--output", "json", s(path)],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    (
        v["format"].as_str().unwrap().to_string(),
        v["virtual-size"].as_u64().unwrap(),
    )
}

/// Reads the whole virtual disk with `VirtualDisk`.
fn virtual_bytes(path: &Path) -> (String, Vec<u8>) {
    let mut disk = VirtualDisk::open(File::open(path).unwrap()).unwrap();
    let mut bytes = Vec::new();
    disk.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, disk.len());
    (disk.format().to_string(), bytes)
}

/// Asserts the image holds exactly the staged package at `relative`.
fn assert_holds(image: &Path, st: &Staging, relative: &str, format: &str, volume: &str) {
    let contents = read_image_file(image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    crate::support::keep_seed("image", image);
    assert_eq!(contents.disk_format, format);
    assert_eq!(contents.volume, volume);
    assert_eq!(contents.packages.len(), 1, "{:?}", contents.packages);
    let found = &contents.packages[0];
    assert_eq!(found.relative_path, relative);
    assert_eq!(found.manifest, st.manifest);
    assert_eq!(found.signature.as_deref(), Some(st.signature.as_slice()));
}

/// A GPT disk of the staged package, in raw form, with its temp dir.
fn gpt_disk() -> (TempDir, Staging, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let st = staging(tmp.path(), "Notes");
    let vol = ntfs_volume(tmp.path(), &st.dir, 8, "2048");
    let disk = partitioned(tmp.path(), &vol, "gpt");
    (tmp, st, disk)
}

#[test]
fn image_bare_ntfs_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let st = staging(tmp.path(), "Notes");
    let vol = ntfs_volume(tmp.path(), &st.dir, 8, "0");
    let relative = format!("\\Notes\\{FULL_NAME}");
    assert_holds(&vol, &st, &relative, "raw", "no partition table");
    // An independent reader sees the same folder.
    let listing = run("ntfsls", &["-p", "/Notes", s(&vol)], None);
    assert!(listing.lines().any(|l| l == FULL_NAME), "{listing}");
}

#[test]
fn image_mbr_and_gpt_raw_disks() {
    let tmp = tempfile::tempdir().unwrap();
    let st = staging(tmp.path(), "Notes");
    let vol = ntfs_volume(tmp.path(), &st.dir, 8, "2048");
    let relative = format!("\\Notes\\{FULL_NAME}");
    let mbr = partitioned(tmp.path(), &vol, "dos");
    assert_holds(&mbr, &st, &relative, "raw", "MBR partition 1");
    let gpt = partitioned(tmp.path(), &vol, "gpt");
    assert_holds(&gpt, &st, &relative, "raw", "GPT partition 1");
}

#[test]
fn image_vhdx_vhd_dynamic_and_fixed() {
    let (_tmp, st, raw) = gpt_disk();
    let raw_bytes = fs::read(&raw).unwrap();
    let relative = format!("\\Notes\\{FULL_NAME}");
    let cases = [
        ("vhdx", "subformat=dynamic", "d.vhdx", "VHDX", "vhdx"),
        ("vhdx", "subformat=fixed", "f.vhdx", "VHDX", "vhdx"),
        (
            "vpc",
            "subformat=dynamic,force_size=on",
            "d.vhd",
            "VHD (dynamic)",
            "vpc",
        ),
        (
            "vpc",
            "subformat=fixed,force_size=on",
            "f.vhd",
            "VHD (fixed)",
            "vpc",
        ),
    ];
    for (format, options, name, ours, qemu) in cases {
        let image = convert(&raw, format, options, name);
        assert_holds(&image, &st, &relative, ours, "GPT partition 1");
        let (qemu_format, qemu_size) = qemu_info(&image, qemu);
        assert_eq!(qemu_format, qemu, "{name}");
        let (format_read, bytes) = virtual_bytes(&image);
        assert_eq!(format_read, ours, "{name}");
        assert_eq!(
            bytes.len() as u64,
            qemu_size,
            "{name}: size as qemu-img says"
        );
        assert!(
            bytes == raw_bytes,
            "{name}: the virtual disk differs from the raw disk"
        );
    }
}

#[test]
fn image_vhd_rounded_to_chs_geometry() {
    // Without force_size qemu rounds a VHD's size up to a CHS geometry: the disk is larger
    // than the GPT says, which is fine.
    let (_tmp, st, raw) = gpt_disk();
    let image = convert(&raw, "vpc", "subformat=dynamic", "chs.vhd");
    let relative = format!("\\Notes\\{FULL_NAME}");
    assert_holds(&image, &st, &relative, "VHD (dynamic)", "GPT partition 1");
    let (_, size) = qemu_info(&image, "vpc");
    let (_, bytes) = virtual_bytes(&image);
    assert_eq!(bytes.len() as u64, size);
}

#[test]
fn image_package_folder_at_root_and_several_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let st = staging(tmp.path(), "Notes");
    let other = "Contoso.Paint_2.0.0.0_x64__8wekyb3d8bbwe";
    let at_root = st.dir.join(other);
    fs::create_dir_all(&at_root).unwrap();
    let paint = manifest("Contoso.Paint", "2.0.0.0");
    fs::write(at_root.join("appxmanifest.xml"), &paint).unwrap();
    fs::create_dir_all(st.dir.join("System Volume Information").join("x")).unwrap();
    fs::write(
        st.dir
            .join("System Volume Information")
            .join("x")
            .join("AppxManifest.xml"),
        "not read",
    )
    .unwrap();
    fs::create_dir_all(st.dir.join("Empty").join("Nothing")).unwrap();
    let vol = ntfs_volume(tmp.path(), &st.dir, 8, "0");
    let contents = read_image_file(&vol).unwrap();
    let paths: Vec<_> = contents
        .packages
        .iter()
        .map(|p| p.relative_path.as_str())
        .collect();
    let notes = format!("\\Notes\\{FULL_NAME}");
    let paint_path = format!("\\{other}");
    assert_eq!(paths, [paint_path.as_str(), notes.as_str()]);
    assert_eq!(contents.packages[0].manifest, paint.as_bytes());
    assert_eq!(contents.packages[0].signature, None);
}

#[test]
fn image_without_packages_reads_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("staging");
    fs::create_dir_all(dir.join("Just").join("Folders")).unwrap();
    let vol = ntfs_volume(tmp.path(), &dir, 8, "0");
    let contents = read_image_file(&vol).unwrap();
    assert!(contents.packages.is_empty());
}

/// The file offset and BAT of a VHDX, parsed here independently: the first region table
/// entry whose GUID is the BAT's.
fn vhdx_bat(bytes: &[u8]) -> u64 {
    let bat_guid = [
        0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A,
        0x08,
    ];
    let table = &bytes[0x30000..0x40000];
    let count = u32::from_le_bytes(table[8..12].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| &table[16 + i * 32..48 + i * 32])
        .find(|e| e[..16] == bat_guid)
        .map(|e| u64::from_le_bytes(e[16..24].try_into().unwrap()))
        .unwrap()
}

#[test]
fn image_corrupt_vhdx_is_an_error() {
    let (tmp, _st, raw) = gpt_disk();
    let image = convert(&raw, "vhdx", "subformat=dynamic", "d.vhdx");
    let bytes = fs::read(&image).unwrap();

    // Truncated to half: the BAT points past the end.
    let half = tmp.path().join("half.vhdx");
    fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_image_file(&half).unwrap_err().to_string();
    assert!(e.contains("past the end"), "{e}");

    // A present block moved outside the file.
    let bat = vhdx_bat(&bytes) as usize;
    let mut moved = bytes.clone();
    let entry = (0..64)
        .map(|i| bat + i * 8)
        .find(|&o| moved[o] & 7 == 6)
        .unwrap();
    let far = (1u64 << 30 >> 20 << 20) | 6;
    moved[entry..entry + 8].copy_from_slice(&far.to_le_bytes());
    let path = tmp.path().join("moved.vhdx");
    fs::write(&path, &moved).unwrap();
    let e = read_image_file(&path).unwrap_err().to_string();
    assert!(
        e.contains("VHDX BAT entry") && e.contains("past the end"),
        "{e}"
    );

    // Both headers' CRCs broken.
    let mut headless = bytes.clone();
    headless[0x10000 + 100] ^= 0xFF;
    headless[0x20000 + 100] ^= 0xFF;
    let path = tmp.path().join("headless.vhdx");
    fs::write(&path, &headless).unwrap();
    let e = read_image_file(&path).unwrap_err().to_string();
    assert!(e.contains("CRC-32C"), "{e}");

    // One header broken: the other is used.
    let mut one = bytes.clone();
    one[0x10000 + 100] ^= 0xFF;
    let path = tmp.path().join("one-header.vhdx");
    fs::write(&path, &one).unwrap();
    assert_eq!(read_image_file(&path).unwrap().packages.len(), 1);
}

#[test]
fn image_corrupt_vhd_and_ntfs_are_errors() {
    let (tmp, _st, raw) = gpt_disk();
    let image = convert(&raw, "vpc", "subformat=dynamic,force_size=on", "d.vhd");
    let bytes = fs::read(&image).unwrap();

    let half = tmp.path().join("half.vhd");
    let mut cut = bytes[..bytes.len() / 2].to_vec();
    cut.extend_from_slice(&bytes[bytes.len() - 512..]);
    fs::write(&half, &cut).unwrap();
    let e = read_image_file(&half).unwrap_err().to_string();
    assert!(e.contains("past the end"), "{e}");

    // Every byte of the volume's MFT area scrambled: an error, not a panic.
    let mut scrambled = fs::read(&raw).unwrap();
    for (i, b) in scrambled[MIB as usize + 4 * 4096..MIB as usize + 6 * MIB as usize]
        .iter_mut()
        .enumerate()
    {
        *b ^= (i * 31 % 255) as u8 | 1;
    }
    let path = tmp.path().join("scrambled.raw");
    fs::write(&path, &scrambled).unwrap();
    assert!(read_image_file(&path).is_err());

    // Random bytes are a raw disk with no partition table.
    let noise = tmp.path().join("noise.vhdx");
    fs::write(
        &noise,
        (0..4096u32).map(|i| (i * 13) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let e = read_image_file(&noise).unwrap_err().to_string();
    assert!(e.contains("neither a partition table"), "{e}");
}

#[test]
fn image_cim_file_set() {
    let tmp = tempfile::tempdir().unwrap();
    let cim = tmp.path().join("notes.cim");
    fs::write(&cim, b"cim").unwrap();
    let e = check_cim(&cim).unwrap_err().to_string();
    assert!(e.contains("no objectid_* file beside notes.cim"), "{e}");
    fs::write(tmp.path().join("objectid_a_0"), b"o").unwrap();
    let e = check_cim(&cim).unwrap_err().to_string();
    assert!(
        e.contains("no region_* file beside notes.cim: copy the whole CimFS file set"),
        "{e}"
    );
    fs::write(tmp.path().join("region_a_0"), b"r").unwrap();
    fs::write(tmp.path().join("region_a_1"), b"r").unwrap();
    let set = check_cim(&cim).unwrap();
    assert_eq!(set.cim_bytes, 3);
    assert_eq!(set.object_id_files, ["objectid_a_0"]);
    assert_eq!(set.region_files, ["region_a_0", "region_a_1"]);
    let e = check_cim(&tmp.path().join("missing.cim"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
    let e = check_cim(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("is not a file"), "{e}");
}

/// An unsigned `.msix` with the manifest, a payload and `[Content_Types].xml`.
fn msix(path: &Path) -> Vec<u8> {
    let manifest = manifest("Contoso.Notes", "1.2.3.0").into_bytes();
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    for (name, bytes) in [
        ("AppxManifest.xml", manifest.as_slice()),
        ("Notes.exe", payload.as_slice()),
        ("Assets/logo.png", b"\x89PNG fake".as_slice()),
        ("[Content_Types].xml", b"<Types/>".as_slice()),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    manifest
}

#[test]
fn image_create_vhdx_and_vhd() {
    require_tools(tools::IMAGE_CREATE);
    let tmp = tempfile::tempdir().unwrap();
    let package = tmp.path().join("notes.msix");
    let manifest = msix(&package);
    for (format, fixed, name, ours, qemu) in [
        (DiskFormat::Vhdx, false, "notes.vhdx", "VHDX", "vhdx"),
        (DiskFormat::Vhd, true, "notes.vhd", "VHD (fixed)", "vpc"),
    ] {
        let out = tmp.path().join(name);
        let opts = CreateOptions {
            package: package.clone(),
            format,
            out: out.clone(),
            root: None,
            fixed,
        };
        let mut lines = Vec::new();
        let report = create_image(&opts, &mut |l| lines.push(l.to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!lines.is_empty());
        assert_eq!(report.out, out);
        assert_eq!(report.disk_format, ours);
        let full = report.package_full_name.clone();
        assert!(full.starts_with("Contoso.Notes_1.2.3.0_x64__"), "{full}");
        assert_eq!(report.relative_path, format!("\\Contoso.Notes\\{full}"));
        let contents = read_image_file(&out).unwrap();
        assert_eq!(contents.packages.len(), 1);
        assert_eq!(contents.packages[0].manifest, manifest);
        assert_eq!(contents.packages[0].signature, None);
        // Independent readers: qemu-img for the container, ntfsls for the volume.
        let (qemu_format, size) = qemu_info(&out, qemu);
        assert_eq!(qemu_format, qemu);
        assert_eq!(size, report.volume_bytes + 2 * MIB);
        let (_, disk) = virtual_bytes(&out);
        let volume = tmp.path().join(format!("{name}.volume"));
        let start = MIB as usize;
        fs::write(&volume, &disk[start..start + report.volume_bytes as usize]).unwrap();
        let listing = run(
            "ntfsls",
            &["-p", &format!("/Contoso.Notes/{full}"), s(&volume)],
            None,
        );
        for file in ["AppxManifest.xml", "Notes.exe", "Assets"] {
            assert!(listing.lines().any(|l| l == file), "{file} in {listing}");
        }
        assert!(!listing.contains("[Content_Types].xml"), "{listing}");
        // Never overwritten.
        let e = create_image(&opts, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("exists already"), "{e}");
    }
}

#[test]
fn image_create_refuses_bad_root() {
    let tmp = tempfile::tempdir().unwrap();
    let package = tmp.path().join("notes.msix");
    msix(&package);
    let opts = CreateOptions {
        package,
        format: DiskFormat::Vhdx,
        out: tmp.path().join("x.vhdx"),
        root: Some("..\\evil".into()),
        fixed: false,
    };
    let e = create_image(&opts, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("is not a Windows folder name"), "{e}");
    assert!(!tmp.path().join("x.vhdx").exists());
}

/// A deterministic pseudo-random sequence (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn image_mutated_volumes_are_read_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let st = staging(tmp.path(), "Notes");
    let vol = fs::read(ntfs_volume(tmp.path(), &st.dir, 8, "0")).unwrap();
    // Where the volume's metadata is: the boot sector, the MFT's file records and the
    // directory index blocks, each a run of sectors behind its signature.
    let mut used = vec![0];
    for (start, sectors) in [(&b"FILE"[..], 2), (&b"INDX"[..], 8)] {
        for i in (0..vol.len() / 512).filter(|i| vol[i * 512..].starts_with(start)) {
            used.extend(i..i + sectors);
        }
    }
    let iterations: u64 = std::env::var("APPATTACH_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let (mut read, mut refused) = (0, 0);
    for _ in 0..iterations {
        let mut bytes = vol.clone();
        for _ in 0..1 + noise.next() % 64 {
            let sector = used[(noise.next() % used.len() as u64) as usize];
            let at = sector * 512 + (noise.next() % 512) as usize;
            bytes[at] = noise.next() as u8;
        }
        match appattach_operator::inspect::image::read_image(std::io::Cursor::new(bytes)) {
            Ok(_) => read += 1,
            Err(_) => refused += 1,
        }
    }
    eprintln!("mutated volumes: {read} read, {refused} refused");
    assert_eq!(read + refused, iterations);
}

#[test]
fn inspect_prints_one_manifest_per_package_in_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("staging");
    let packages = [
        ("Apps", "Contoso.Notes", "1.2.3.0"),
        ("Apps", "Contoso.Paint", "2.0.0.0"),
    ];
    for (root, name, version) in packages {
        let full = format!("{name}_{version}_x64__t247dhg0dta00");
        let folder = dir.join(root).join(full);
        fs::create_dir_all(&folder).unwrap();
        let xml = manifest(name, version);
        fs::write(folder.join("AppxManifest.xml"), &xml).unwrap();
        let map = crate::support::block_map(&[("AppxManifest.xml", xml.as_bytes())]);
        fs::write(folder.join("AppxBlockMap.xml"), map).unwrap();
    }
    let vol = ntfs_volume(tmp.path(), &dir, 8, "0");
    let image = convert(&vol, "vhdx", "subformat=dynamic", "apps.vhdx");
    let (docs, summary) = crate::cli::inspect(&[
        image.to_str().unwrap(),
        "--image-path",
        r"\\fs\apps\apps.vhdx",
        "--location",
        "westeurope",
        "--allow-unsigned",
    ]);
    let names: Vec<(&str, &str, Option<&str>)> = docs
        .iter()
        .map(|d| {
            let p = &d.spec.package;
            (
                p.name.as_str(),
                p.version.as_str(),
                p.relative_path.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (
                "Contoso.Notes",
                "1.2.3.0",
                Some(r"\Apps\Contoso.Notes_1.2.3.0_x64__t247dhg0dta00")
            ),
            (
                "Contoso.Paint",
                "2.0.0.0",
                Some(r"\Apps\Contoso.Paint_2.0.0.0_x64__t247dhg0dta00")
            ),
        ]
    );
    assert!(
        docs.iter()
            .all(|d| d.spec.image.path == r"\\fs\apps\apps.vhdx")
    );
    assert!(
        summary.contains("VHDX, NTFS on no partition table, 2 package(s)"),
        "{summary}"
    );
}

/// An image made from a signed package verifies: the signature, the digests of the
/// footprint files the folder keeps, and every file against the block map. A file changed
/// in the folder afterwards is refused, naming it and its block.
#[test]
fn an_image_is_verified_against_its_packages_signature_and_block_map() {
    require_tools(tools::IMAGE_CREATE);
    let (tmp, certs, signed) = crate::support::signed_notes(true, 150_000);
    let image = tmp.path().join("notes.vhdx");
    create_image(
        &CreateOptions {
            package: signed.clone(),
            format: DiskFormat::Vhdx,
            out: image.clone(),
            root: None,
            fixed: false,
        },
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ca = certs.ca.cert.to_str().unwrap();
    let (docs, summary) = crate::cli::inspect(&[image.to_str().unwrap(), "--trust", ca]);
    assert!(
        summary.contains("signature digests AXBM AXCI match; 3 file(s), 5 block(s)"),
        "{summary}"
    );
    let root = docs[0].spec.certificate.clone().unwrap().root.unwrap();
    assert_eq!(
        root.thumbprint.as_deref(),
        Some(certs.ca.thumbprint.as_str())
    );

    // The same folder with one byte of Notes.exe changed, in an image of its own.
    let staging = tmp.path().join("staging");
    let folder = staging.join("Contoso.Notes").join("expanded");
    fs::create_dir_all(&folder).unwrap();
    appattach_operator::inspect::package::expand_to(&signed, &folder).unwrap();
    let mut changed = fs::read(folder.join("Notes.exe")).unwrap();
    changed[140_000] ^= 1;
    fs::write(folder.join("Notes.exe"), changed).unwrap();
    let vol = ntfs_volume(tmp.path(), &staging, 8, "0");
    let tampered = convert(&vol, "vhdx", "subformat=dynamic", "tampered.vhdx");
    let out = Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["inspect", tampered.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "Notes.exe block 2 (bytes 131072..150000): APPX_E_BLOCK_HASH_INVALID (0x80080207)"
        ),
        "{err}"
    );
    // A file of the block map missing from the folder, and the block map itself changed.
    fs::remove_file(folder.join("Assets").join("Logo.png")).unwrap();
    let map = fs::read_to_string(folder.join("AppxBlockMap.xml")).unwrap();
    fs::write(
        folder.join("AppxBlockMap.xml"),
        map.replace("Size=\"3\"", "Size=\"3\" "),
    )
    .unwrap();
    fs::remove_file(&vol).unwrap();
    let vol = ntfs_volume(tmp.path(), &staging, 8, "0");
    let tampered = convert(&vol, "vhdx", "subformat=dynamic", "tampered2.vhdx");
    let out = Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["inspect", tampered.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AppxBlockMap.xml (AXBM): TRUST_E_BAD_DIGEST"),
        "{err}"
    );
    assert!(
        err.contains("Assets\\Logo.png: APPX_E_MISSING_REQUIRED_FILE"),
        "{err}"
    );
}
