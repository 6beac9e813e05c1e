//! App attach images: the NTFS volume of a VHDX/VHD and the package folders at its root;
//! and a CimFS image's file set.

use serde::Serialize;

/// One package folder found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPackage {
    /// Path of the package folder inside the volume, `\<root>\<PackageFullName>`.
    pub relative_path: String,
    /// The folder's `AppxManifest.xml`.
    pub manifest: Vec<u8>,
    /// The folder's `AppxSignature.p7x`, when it has one.
    pub signature: Option<Vec<u8>>,
}

/// What an image holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageContents {
    /// How the disk is stored: `VHDX`, `VHD (fixed)`, `VHD (dynamic)`.
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

// PLACEHOLDERS (added by the package/CLI side so the crate builds): replace them with the
// real `read_image_file` and `check_cim` and delete this block.
/// Reads an image file (placeholder).
pub fn read_image_file(path: &std::path::Path) -> super::Result<ImageContents> {
    Err(super::Error::new(
        path.display(),
        "image reading is being written",
    ))
}
/// Checks a CimFS file set (placeholder).
pub fn check_cim(path: &std::path::Path) -> super::Result<CimFileSet> {
    Err(super::Error::new(
        path.display(),
        "CimFS checking is being written",
    ))
}
