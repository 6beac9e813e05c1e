//! Reading app attach packages and disk images on Linux: the package's identity, version,
//! applications and signing certificate, out of a `.msix`/`.appx` (or a bundle), or out of
//! a VHDX/VHD image that holds the expanded package. Packages and images are untrusted
//! input: every size and count read is bounded, and a bad input is an [`Error`] that says
//! what is wrong and where, never a panic.

pub mod create;
pub mod disk;
pub mod image;
pub mod package;
pub mod signature;
pub mod tools;
pub mod trust;
pub mod verify;

use std::fmt;

/// What is wrong with a package or an image, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {what}")]
pub struct Error {
    /// Where: the file, the entry inside it, the structure and its offset.
    pub at: String,
    /// What is wrong, and what to do where there is something to do.
    pub what: String,
}

impl Error {
    /// An error at a place.
    pub fn new(at: impl fmt::Display, what: impl fmt::Display) -> Self {
        Self {
            at: at.to_string(),
            what: what.to_string(),
        }
    }

    /// The same error, said to be inside `outer` (a file, an image, a bundle).
    pub fn within(self, outer: impl fmt::Display) -> Self {
        Self {
            at: format!("{outer}: {}", self.at),
            what: self.what,
        }
    }
}

/// Result of reading untrusted input.
pub type Result<T> = std::result::Result<T, Error>;

/// Where a package was found: in a package file, or in a folder of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The package (a bundle's identity with its payloads, when it is a bundle).
    pub package: package::PackageFile,
    /// The package folder inside the image (`\<root>\<PackageFullName>`), for an image.
    pub relative_path: Option<String>,
    /// What an image's package folder holds, for [`verify::verify_folder`].
    pub folder: Option<Box<image::FoundPackage>>,
}

impl Found {
    /// Whether the signer's subject is the manifest's Publisher, as Windows requires to
    /// install the package; `None` for an unsigned package.
    pub fn publisher_matches(&self) -> Option<bool> {
        let facts = &self.package.facts;
        facts
            .signature
            .as_ref()
            .map(|s| signature::same_distinguished_name(&s.subject, &facts.publisher))
    }
}

/// What a path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// A package file.
    Package(Box<Found>),
    /// A VHDX or VHD image and the packages in it.
    Image {
        /// The image's disk format and volume.
        contents: ImageSummary,
        /// The packages found at the image's root.
        packages: Vec<Found>,
    },
    /// A CimFS image: its file set only, as its contents are not read.
    Cim(image::CimFileSet),
}

/// How an image is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `VHDX`, `VHD (fixed)`, `VHD (dynamic)`.
    pub disk_format: String,
    /// Where the NTFS volume is.
    pub volume: String,
}

/// Inspects a package file or an image, by its extension.
pub fn inspect_path(path: &std::path::Path) -> Result<Inspection> {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    if package::is_package_path(&lower) {
        return Ok(Inspection::Package(Box::new(Found {
            package: package::read_package(path)?,
            relative_path: None,
            folder: None,
        })));
    }
    if lower.ends_with(".cim") {
        return image::check_cim(path).map(Inspection::Cim);
    }
    if lower.ends_with(".vhdx") || lower.ends_with(".vhd") {
        let contents = image::read_image_file(path)?;
        return image_packages(contents).map_err(|e| e.within(path.display()));
    }
    Err(Error::new(
        path.display(),
        "is neither a package (.msix, .appx, .msixbundle, .appxbundle) nor an image (.vhdx, .vhd, .cim)",
    ))
}

fn image_packages(contents: image::ImageContents) -> Result<Inspection> {
    let mut packages = Vec::new();
    for found in contents.packages {
        let at = &found.relative_path;
        let mut facts = package::parse_manifest(&found.manifest)
            .map_err(|e| e.within(format!("{at}\\AppxManifest.xml")))?;
        if let Some(bytes) = &found.signature {
            facts.signature = Some(
                signature::read_p7x(bytes)
                    .map_err(|e| e.within(format!("{at}\\AppxSignature.p7x")))?,
            );
        }
        packages.push(Found {
            package: package::PackageFile {
                kind: package::PackageKind::Msix,
                facts,
                payloads: Vec::new(),
            },
            relative_path: Some(found.relative_path.clone()),
            folder: Some(Box::new(found)),
        });
    }
    if packages.is_empty() {
        return Err(Error::new(
            format!("{} volume", contents.volume),
            r"holds no package folder (\<root>\<PackageFullName>\AppxManifest.xml, as msixmgr lays it out)",
        ));
    }
    Ok(Inspection::Image {
        contents: ImageSummary {
            disk_format: contents.disk_format,
            volume: contents.volume,
        },
        packages,
    })
}
