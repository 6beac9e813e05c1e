//! `appattach inspect PATH`: the identity, version, applications and signing certificate of
//! a package (`.msix`, `.appx`, bundles) or of the packages in an image (`.vhdx`, `.vhd`),
//! printed as AppAttachPackage manifests ready to commit, with a summary on stderr.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::domain::naming;
use crate::inspect::package::PackageKind;
use crate::inspect::trust::TrustedRoots;
use crate::inspect::verify::{self, Code, Problem, Verification};
use crate::inspect::{self, Found, Inspection};
use crate::resources::{
    AppAttachPackage, AppAttachPackageSpec, Application, Architecture, CertificateRootSpec,
    CertificateSpec, ImageFormat, ImageSpec, PackageDependency, PackageSpec, PackageType,
};

/// Arguments of `appattach inspect`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Reads on Linux what the portal's import reads on Windows: the manifest's Identity \
(name, publisher, version, architecture), the derived family and full names, the \
applications, dependencies and target device families, and the signature \
(AppxSignature.p7x: signer, issuer, thumbprint, validity, code-signing EKU, timestamp). \
An image must be laid out as msixmgr lays it out: \\<root>\\<PackageFullName>\\AppxManifest.xml. \
CimFS images are checked for their file set (.cim, objectid_*, region_*) only.")]
pub struct Args {
    /// The package (.msix, .appx, .msixbundle, .appxbundle) or image (.vhdx, .vhd, .cim).
    path: PathBuf,
    /// UNC path of the image on the SMB share, for spec.image.path
    /// (like \\fs.contoso.com\appattach\MyApp_1.0.0.0.vhdx).
    #[arg(long)]
    image_path: Option<String>,
    /// Azure region of the package, for spec.location.
    #[arg(long, env = "APPATTACH_LOCATION")]
    location: Option<String>,
    /// Namespace of the printed objects.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "yaml")]
    output: Output,
    /// Certificates the session hosts trust (PEM, any number per file, or one DER): the
    /// signer's chain must lead to one of them, for code signing, at the signature's
    /// timestamp (else now). Without it the chain is not checked, only reported.
    #[arg(long = "trust", value_name = "FILE")]
    trust: Vec<PathBuf>,
    /// Take an unsigned package (TRUST_E_NOSIGNATURE) with a warning instead of refusing
    /// it, as Windows does in developer mode only; app attach needs signed packages.
    #[arg(long)]
    allow_unsigned: bool,
}

/// How the objects are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// YAML documents separated by `---`.
    Yaml,
    /// One JSON object, or a `List` of them.
    Json,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let trust = trusted_roots(&args.trust)?;
    let now = jiff::Timestamp::now();
    let against = verify::Against {
        trust: trust.as_ref(),
        now,
    };
    let inspection = inspect::inspect_path(&args.path)?;
    let mut verifications = Vec::new();
    let found = match inspection {
        Inspection::Package(found) => {
            verifications.push(Some(verify::verify_path(&args.path, against)?));
            vec![*found]
        }
        Inspection::Image { contents, packages } => {
            verifications.extend(packages.iter().map(|f| {
                f.folder
                    .as_ref()
                    .map(|folder| verify::verify_folder(folder, against))
            }));
            eprintln!(
                "{}: {}, NTFS on {}, {} package(s)",
                args.path.display(),
                contents.disk_format,
                contents.volume,
                packages.len()
            );
            packages
        }
        Inspection::Cim(set) => {
            anyhow::bail!(
                "{}: a CimFS image ({} bytes, {} objectid_* and {} region_* file(s) beside it: {}). \
                 Its contents are not read here: inspect the package the image was made from, \
                 with --image-path naming the image",
                args.path.display(),
                set.cim_bytes,
                set.object_id_files.len(),
                set.region_files.len(),
                set.object_id_files
                    .iter()
                    .chain(&set.region_files)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    };
    let image_path = args.image_path.clone().or_else(|| image_default(&args));
    let mut objects = Vec::new();
    let mut refused = 0;
    for (i, f) in found.iter().enumerate() {
        let verification = verifications.get(i).cloned().flatten();
        eprint!("{}", summary(f, now));
        let problems = refusals(f, verification.as_ref(), args.allow_unsigned);
        eprint!(
            "{}",
            verdict(verification.as_ref(), &problems, trust.is_some())
        );
        refused += problems.len();
        let object = manifest(f, verification.as_ref(), &args, image_path.as_deref())?;
        objects.push(object);
    }
    if refused > 0 {
        anyhow::bail!(
            "{}: session hosts would refuse this package ({refused} problem(s) above); no manifest is printed",
            args.path.display()
        );
    }
    let mut missing = Vec::new();
    if args.location.is_none() {
        missing.push("spec.location (--location)");
    }
    if image_path.is_none() {
        missing.push("spec.image.path (--image-path)");
    }
    if !missing.is_empty() {
        eprintln!(
            "fill in before applying (left empty, the API server refuses them): {}",
            missing.join(", ")
        );
    }
    super::out(&render(&objects, args.output)?)?;
    Ok(())
}

/// The certificates of the `--trust` files, if any.
pub(super) fn trusted_roots(files: &[PathBuf]) -> anyhow::Result<Option<TrustedRoots>> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut trust = TrustedRoots::default();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("--trust {}", f.display()))?;
        trust.add(&bytes, &format!("--trust {}", f.display()))?;
    }
    Ok(Some(trust))
}

/// Why Windows would refuse the package: what verification found, and a signer that is
/// not the Publisher. An unsigned package is let through with `allow_unsigned`.
fn refusals(f: &Found, v: Option<&Verification>, allow_unsigned: bool) -> Vec<Problem> {
    let mut out: Vec<Problem> = v.map(|v| v.refusals(allow_unsigned)).unwrap_or_default();
    if f.publisher_matches() == Some(false) {
        let facts = &f.package.facts;
        let signer = facts.signature.as_ref().map(|s| s.subject.as_str());
        out.push(Problem::new(
            Code::BadFormat,
            "AppxManifest.xml Identity Publisher",
            format!(
                "{:?} is not the signer {:?}: Windows installs a package only when its \
                 Publisher is the subject of the certificate that signed it",
                facts.publisher,
                signer.unwrap_or_default()
            ),
        ));
    }
    out
}

/// What verification found, for the summary.
fn verdict(v: Option<&Verification>, problems: &[Problem], trusted: bool) -> String {
    let mut s = String::new();
    if let Some(v) = v {
        let parts = if !v.signed {
            "none (not signed)".to_string()
        } else if v.parts.is_empty() {
            "none match".to_string()
        } else {
            format!("{} match", v.parts.join(" "))
        };
        let _ = writeln!(
            s,
            "  {:<13}signature digests {parts}; {} file(s), {} block(s) match the block map",
            "verified", v.files, v.blocks
        );
        if let Some(root) = &v.root {
            let thumbprint = root
                .thumbprint
                .as_deref()
                .map_or(String::new(), |t| format!(" ({t})"));
            let how = if root.trusted {
                "trusted: it is among the --trust certificates"
            } else if trusted {
                "not trusted"
            } else {
                "not checked: give --trust with the roots the session hosts trust"
            };
            let _ = writeln!(
                s,
                "  {:<13}{}{thumbprint}, {how}",
                "chain root", root.subject
            );
        }
    } else {
        let _ = writeln!(
            s,
            "  {:<13}not verified: nothing to verify it against",
            "verified"
        );
    }
    for p in problems {
        let _ = writeln!(s, "  refused: {p}");
    }
    s
}

/// Images are named by their own path when it is already a UNC path.
fn image_default(args: &Args) -> Option<String> {
    let p = args.path.to_string_lossy();
    p.starts_with(r"\\").then(|| p.to_string())
}

fn package_type(kind: PackageKind) -> PackageType {
    match kind {
        PackageKind::Msix => PackageType::Msix,
        PackageKind::Appx => PackageType::Appx,
        PackageKind::MsixBundle => PackageType::MsixBundle,
        PackageKind::AppxBundle => PackageType::AppxBundle,
    }
}

fn architecture(arch: &str) -> anyhow::Result<Architecture> {
    Ok(match arch {
        "x64" => Architecture::X64,
        "x86" => Architecture::X86,
        "arm64" => Architecture::Arm64,
        "arm" => Architecture::Arm,
        "neutral" => Architecture::Neutral,
        other => anyhow::bail!(
            "ProcessorArchitecture {other:?} is not one app attach takes (x64, x86, arm64, arm, neutral)"
        ),
    })
}

/// A display name, unless it is a reference into the package's resources.
fn plain(name: Option<&String>) -> Option<String> {
    name.filter(|n| !n.starts_with("ms-resource:") && !n.is_empty())
        .cloned()
}

/// The object name for a package name: `Contoso.Expenses` → `contoso-expenses`.
pub fn object_name(package_name: &str) -> String {
    naming::backend_name("", package_name)
        .trim_start_matches('-')
        .to_string()
}

/// The AppAttachPackage for one package, as a JSON value without the fields left at their
/// defaults that a reader need not see (rollout, suspend).
pub fn manifest(
    f: &Found,
    verification: Option<&Verification>,
    args: &Args,
    image_path: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let facts = &f.package.facts;
    let image_path = image_path.unwrap_or_default().to_string();
    let mut object = AppAttachPackage::new(
        &object_name(&facts.name),
        AppAttachPackageSpec {
            mode: Default::default(),
            location: args.location.clone().unwrap_or_default(),
            image: ImageSpec {
                format: ImageFormat::from_path(&image_path),
                path: image_path,
            },
            package: PackageSpec {
                package_type: package_type(f.package.kind),
                name: facts.name.clone(),
                publisher: facts.publisher.clone(),
                version: facts.version.clone(),
                architecture: architecture(&facts.architecture)
                    .with_context(|| format!("package {}", facts.full_name))?,
                family_name: Some(facts.family_name.clone()),
                full_name: Some(facts.full_name.clone()),
                display_name: plain(facts.display_name.as_ref()),
                relative_path: f.relative_path.clone(),
                applications: facts
                    .applications
                    .iter()
                    .map(|a| Application {
                        id: a.id.clone(),
                        display_name: plain(a.display_name.as_ref()),
                    })
                    .collect(),
                dependencies: facts
                    .dependencies
                    .iter()
                    .map(|d| PackageDependency {
                        name: d.name.clone(),
                        publisher: d.publisher.clone(),
                        min_version: d.min_version.clone(),
                    })
                    .collect(),
            },
            certificate: facts.signature.as_ref().map(|s| CertificateSpec {
                subject: s.subject.clone(),
                expiry: s.not_after.to_string(),
                timestamped: s.timestamp.is_some(),
                thumbprint: Some(s.thumbprint.clone()),
                root: verification
                    .and_then(|v| v.root.as_ref())
                    .filter(|r| !r.subject.is_empty())
                    .map(|r| CertificateRootSpec {
                        subject: r.subject.clone(),
                        thumbprint: r.thumbprint.clone(),
                    }),
            }),
            registration: Default::default(),
            state: Default::default(),
            health_check_on_staging_failure: Default::default(),
            rollout: Default::default(),
            suspend: false,
            target: None,
        },
    );
    object.metadata.namespace.clone_from(&args.namespace);
    let mut value = serde_json::to_value(&object)?;
    if let Some(spec) = value.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("rollout");
        spec.remove("suspend");
    }
    Ok(value)
}

fn render(objects: &[serde_json::Value], output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Yaml => {
            let docs: Vec<String> = objects
                .iter()
                .map(serde_yaml_ng::to_string)
                .collect::<Result<_, _>>()?;
            docs.join("---\n")
        }
        Output::Json => {
            let value = match objects {
                [one] => one.clone(),
                many => serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": many }),
            };
            serde_json::to_string_pretty(&value)? + "\n"
        }
    })
}

/// The human summary of one package, with what would stop it from working.
pub fn summary(f: &Found, now: jiff::Timestamp) -> String {
    let p = &f.package;
    let facts = &p.facts;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} ({}), {:?}",
        facts.name, facts.version, facts.architecture, p.kind
    );
    let mut row = |k: &str, v: &str| {
        let _ = writeln!(s, "  {k:<13}{v}");
    };
    row("full name", &facts.full_name);
    row("family name", &facts.family_name);
    row("publisher", &facts.publisher);
    if let Some(path) = &f.relative_path {
        row("in image", path);
    }
    for a in &facts.applications {
        let name = a.display_name.as_deref().unwrap_or("-");
        row(
            "application",
            &format!("{} ({name}) {}", a.id, a.app_user_model_id),
        );
    }
    for d in &facts.dependencies {
        row("depends on", &format!("{} >= {}", d.name, d.min_version));
    }
    for t in &facts.target_device_families {
        row("runs on", &format!("{} >= {}", t.name, t.min_version));
    }
    for payload in &p.payloads {
        row(
            "payload",
            &format!(
                "{} ({}, {})",
                payload.facts.full_name, payload.package_type, payload.file_name
            ),
        );
    }
    let mut warnings = Vec::new();
    match &facts.signature {
        None => warnings.push(
            "the package is not signed: session hosts install only packages signed by a trusted certificate"
                .to_string(),
        ),
        Some(sig) => {
            row("signed by", &sig.subject);
            row("issued by", &sig.issuer);
            row("thumbprint", &sig.thumbprint);
            row("valid", &format!("{} to {}", sig.not_before, sig.not_after));
            row("code signing", if sig.code_signing { "yes" } else { "no" });
            row(
                "timestamped",
                &sig.timestamp.map_or("no".to_string(), |t| t.to_string()),
            );
            if !sig.code_signing {
                warnings.push(
                    "the certificate is not for code signing (no EKU 1.3.6.1.5.5.7.3.3): Windows refuses the signature"
                        .to_string(),
                );
            }
            if sig.not_after < now && sig.timestamp.is_none() {
                warnings.push(format!(
                    "the certificate expired at {} and the signature is not timestamped: the controller reports the package not Ready (CertificateExpired)",
                    sig.not_after
                ));
            }
        }
    }
    for w in warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    s
}
