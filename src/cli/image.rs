//! `appattach image create`: an app attach image (VHDX or VHD) made on Linux from a package,
//! laid out as msixmgr lays it out, with Debian's NTFS, partitioning and qemu tools.

use std::path::PathBuf;

use crate::inspect::create::{self, CreateOptions, DiskFormat};

/// Arguments of `appattach image`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Make a VHDX or VHD app attach image holding one package.
    #[command(after_help = "\
The layout follows msixmgr's (msixmgr -Unpack -applyACLs -create -fileType vhdx): one NTFS \
volume in a GPT partition, a root folder (--root, by default the package name), and in it \
the package full-name folder with the expanded package, without [Content_Types].xml. Folder \
ACLs are not set: Linux tools cannot write the ACLs msixmgr's -applyACLs writes, and app \
attach mounts the image read-only. The image is sized from the expanded package with \
headroom and read back before the command succeeds.

Needs mkntfs (Debian package ntfs-3g), wimcapture and wimapply (wimtools), sfdisk (fdisk) \
and qemu-img (qemu-utils).")]
    Create(CreateArgs),
}

/// Arguments of `appattach image create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The package to put in the image (.msix or .appx).
    #[arg(long)]
    package: PathBuf,
    /// Disk image format.
    #[arg(long, value_enum, default_value = "vhdx")]
    format: Format,
    /// The image file to write.
    #[arg(long)]
    out: PathBuf,
    /// Name of the root folder in the image (default: the package name).
    #[arg(long)]
    root: Option<String>,
    /// A fixed-size disk instead of a dynamically expanding one.
    #[arg(long)]
    fixed: bool,
    /// Certificates the session hosts trust (PEM or DER): the package's signer must chain
    /// to one of them (as `appattach inspect --trust`).
    #[arg(long = "trust", value_name = "FILE")]
    trust: Vec<PathBuf>,
    /// Make an image of an unsigned package (TRUST_E_NOSIGNATURE) too, for developer-mode
    /// testing; session hosts stage signed packages only.
    #[arg(long)]
    allow_unsigned: bool,
}

/// Disk image format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// VHDX (recommended over VHD).
    Vhdx,
    /// VHD (not recommended).
    Vhd,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Command::Create(a) = args.command;
    // The package is verified as a session host will verify it before an image is made:
    // an image of a package the hosts refuse would fail its rollout's first ring.
    let trust = super::inspect::trusted_roots(&a.trust)?;
    let against = crate::inspect::verify::Against {
        trust: trust.as_ref(),
        now: jiff::Timestamp::now(),
    };
    let verification = crate::inspect::verify::verify_path(&a.package, against)?;
    let problems: Vec<String> = verification
        .refusals(a.allow_unsigned)
        .iter()
        .map(|p| format!("  {p}"))
        .collect();
    if !problems.is_empty() {
        anyhow::bail!(
            "{}: session hosts would refuse this package, so no image is made:\n{}",
            a.package.display(),
            problems.join("\n")
        );
    }
    let options = CreateOptions {
        package: a.package,
        format: match a.format {
            Format::Vhdx => DiskFormat::Vhdx,
            Format::Vhd => DiskFormat::Vhd,
        },
        out: a.out,
        root: a.root,
        fixed: a.fixed,
    };
    let report = create::create_image(&options, &mut |line: &str| eprintln!("{line}"))?;
    eprintln!(
        "created {} ({}, {} MiB volume): {} at {}",
        report.out.display(),
        report.disk_format,
        report.volume_bytes >> 20,
        report.package_full_name,
        report.relative_path
    );
    Ok(())
}
