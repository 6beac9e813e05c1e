//! MSIX and Appx packages and bundles (ZIP/OPC): the manifest's identity, applications,
//! dependencies and target device families, and the signature.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use roxmltree::{Document, Node, ParsingOptions};
use serde::Serialize;
use zip::ZipArchive;

use super::signature::{self, SignatureFacts};
use super::{Error, Result};
use crate::domain::naming::publisher_id;

/// Facts of one package, from its `AppxManifest.xml` (and its signature, when read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageFacts {
    /// Identity Name.
    pub name: String,
    /// Identity Publisher.
    pub publisher: String,
    /// Identity Version.
    pub version: String,
    /// Identity ProcessorArchitecture (`neutral` when absent).
    pub architecture: String,
    /// Identity ResourceId (empty when absent).
    pub resource_id: String,
    /// Publisher id: 13 Crockford base32 characters.
    pub publisher_id: String,
    /// `Name_PublisherId`.
    pub family_name: String,
    /// `Name_Version_Arch_ResourceId_PublisherId`.
    pub full_name: String,
    /// Properties DisplayName.
    pub display_name: Option<String>,
    /// Properties PublisherDisplayName.
    pub publisher_display_name: Option<String>,
    /// Applications.
    pub applications: Vec<AppFacts>,
    /// PackageDependency elements.
    pub dependencies: Vec<DependencyFacts>,
    /// TargetDeviceFamily elements.
    pub target_device_families: Vec<DeviceFamily>,
    /// The signature, when the package has one.
    pub signature: Option<SignatureFacts>,
}

/// One application of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppFacts {
    /// Application Id.
    pub id: String,
    /// VisualElements DisplayName.
    pub display_name: Option<String>,
    /// `PackageFamilyName!Id`.
    pub app_user_model_id: String,
}

/// One dependency of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyFacts {
    /// Name.
    pub name: String,
    /// Publisher.
    pub publisher: String,
    /// MinVersion.
    pub min_version: String,
}

/// One TargetDeviceFamily.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFamily {
    /// Name, e.g. `Windows.Desktop`.
    pub name: String,
    /// MinVersion.
    pub min_version: String,
    /// MaxVersionTested.
    pub max_version_tested: Option<String>,
}

/// Which kind of package file, from its contents and extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PackageKind {
    /// `.msix`
    Msix,
    /// `.appx`
    Appx,
    /// `.msixbundle`
    MsixBundle,
    /// `.appxbundle`
    AppxBundle,
}

impl PackageKind {
    /// Whether the kind is a bundle of packages.
    pub fn is_bundle(self) -> bool {
        matches!(self, Self::MsixBundle | Self::AppxBundle)
    }
}

/// What a package file holds: the package (or the bundle's identity) and, for a bundle,
/// each payload package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageFile {
    /// The kind of package file.
    pub kind: PackageKind,
    /// The package, or the bundle (its identity, with the applications of its payloads).
    pub facts: PackageFacts,
    /// A bundle's payload packages, each read from its own manifest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payloads: Vec<PayloadFacts>,
}

/// One payload package of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadFacts {
    /// File name inside the bundle.
    pub file_name: String,
    /// `application` or `resource`.
    pub package_type: String,
    /// The payload's facts.
    pub facts: PackageFacts,
}

/// Bounds on what is read out of an untrusted package.
pub mod limits {
    /// Most entries a package may have.
    pub const ENTRIES: usize = 200_000;
    /// Largest manifest read (`AppxManifest.xml`, `AppxBundleManifest.xml`).
    pub const MANIFEST_BYTES: u64 = 10 << 20;
    /// Largest signature read (`AppxSignature.p7x`).
    pub const SIGNATURE_BYTES: u64 = 1 << 20;
    /// Most XML nodes in a manifest.
    pub const XML_NODES: u32 = 200_000;
    /// Largest payload package of a bundle read into memory; larger ones go to a temp file.
    pub const PAYLOAD_IN_MEMORY: u64 = 64 << 20;
    /// Largest payload package of a bundle.
    pub const PAYLOAD_BYTES: u64 = 8 << 30;
    /// Most payload packages in a bundle.
    pub const PAYLOADS: usize = 64;
    /// Most bytes expanded out of one package.
    pub const EXPANDED_BYTES: u64 = 64 << 30;
    /// Largest ratio of expanded to compressed size of one entry (beyond a first MiB).
    pub const COMPRESSION_RATIO: u64 = 200;
    /// Most applications, dependencies and device families read.
    pub const LIST_ITEMS: usize = 1_000;
}

const MANIFEST: &str = "AppxManifest.xml";
const SIGNATURE: &str = "AppxSignature.p7x";
const BUNDLE_MANIFEST: &str = "AppxMetadata/AppxBundleManifest.xml";
const CONTENT_TYPES: &str = "[Content_Types].xml";

/// Reads a package file (`.msix`, `.appx`, `.msixbundle`, `.appxbundle`). The payload
/// packages of a flat bundle are read from the bundle's folder.
pub fn read_package(path: &Path) -> Result<PackageFile> {
    let file =
        File::open(path).map_err(|e| Error::new(path.display(), format!("cannot open: {e}")))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    read_package_in(
        BufReader::new(file),
        &path.display().to_string(),
        Some(folder),
    )
    .map_err(|e| e.within(path.display()))
}

/// Reads a package from any seekable source; `name` is its file name (the extension tells
/// MSIX from Appx). A flat bundle read this way has no folder to find its payloads in,
/// and is refused: read it with [`read_package`].
pub fn read_package_from<R: Read + Seek>(source: R, name: &str) -> Result<PackageFile> {
    read_package_in(source, name, None)
}

/// [`read_package_from`], with the folder a flat bundle's payload packages are in.
fn read_package_in<R: Read + Seek>(
    source: R,
    name: &str,
    folder: Option<&Path>,
) -> Result<PackageFile> {
    let mut zip = open_zip(source)?;
    let entries = Entries::of(&zip);
    let lower = name.to_ascii_lowercase();
    let appx = lower.ends_with(".appx") || lower.ends_with(".appxbundle");
    if entries.find(BUNDLE_MANIFEST).is_some() {
        read_bundle(&mut zip, &entries, appx, folder)
    } else {
        let facts = read_single(&mut zip, &entries)?;
        let kind = if appx {
            PackageKind::Appx
        } else {
            PackageKind::Msix
        };
        Ok(PackageFile {
            kind,
            facts,
            payloads: Vec::new(),
        })
    }
}

/// A package's ZIP entries by the part names they stand for. OPC part names are
/// percent-encoded UTF-8 in the ZIP (`%E0%A4%AE...appx`), while manifests name the
/// files decoded (`महसुस.appx`), and two part names are the same when they differ only
/// in ASCII case: every lookup of an entry by name goes through here.
struct Entries {
    by_name: std::collections::HashMap<String, usize>,
}

impl Entries {
    fn of<R: Read + Seek>(zip: &ZipArchive<R>) -> Self {
        let mut by_name = std::collections::HashMap::with_capacity(zip.len());
        for index in 0..zip.len() {
            // A name that is not valid UTF-8 or %-encoding stands for no part a manifest
            // can name; expanding the package refuses it.
            let Some(Ok(raw)) = zip.name_for_index(index) else {
                continue;
            };
            let Some(decoded) = decode_entry_name(&raw) else {
                continue;
            };
            by_name.entry(part_key(&decoded)).or_insert(index);
        }
        Self { by_name }
    }

    /// The index of the entry of a part named as a manifest names it (decoded, with `/`
    /// or `\` between folders).
    fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(&part_key(name)).copied()
    }
}

/// How part names compare: `/` between folders, ASCII case ignored.
pub(crate) fn part_key(decoded: &str) -> String {
    decoded.replace('\\', "/").to_ascii_lowercase()
}

fn read_single<R: Read + Seek>(zip: &mut ZipArchive<R>, entries: &Entries) -> Result<PackageFacts> {
    let manifest =
        read_entry(zip, entries, MANIFEST, limits::MANIFEST_BYTES)?.ok_or_else(|| {
            Error::new(
                MANIFEST,
                "the package has no AppxManifest.xml: this is not an MSIX or Appx package",
            )
        })?;
    let mut facts = parse_manifest(&manifest).map_err(|e| e.within(MANIFEST))?;
    facts.signature = read_signature(zip, entries)?;
    Ok(facts)
}

fn read_signature<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    entries: &Entries,
) -> Result<Option<SignatureFacts>> {
    match read_entry(zip, entries, SIGNATURE, limits::SIGNATURE_BYTES)? {
        Some(bytes) => signature::read_p7x(&bytes)
            .map(Some)
            .map_err(|e| e.within(SIGNATURE)),
        None => Ok(None),
    }
}

fn read_bundle<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    entries: &Entries,
    appx: bool,
    folder: Option<&Path>,
) -> Result<PackageFile> {
    let manifest = read_entry(zip, entries, BUNDLE_MANIFEST, limits::MANIFEST_BYTES)?
        .ok_or_else(|| Error::new(BUNDLE_MANIFEST, "missing"))?;
    let bundle = parse_bundle_manifest(&manifest).map_err(|e| e.within(BUNDLE_MANIFEST))?;
    let mut payloads = Vec::new();
    for entry in &bundle.packages {
        let at = format!("payload {}", entry.file_name);
        let facts = match entries.find(&entry.file_name) {
            Some(index) => read_payload(zip, index).map_err(|e| e.within(&at))?,
            // A flat bundle: the payload is a file of its own, beside the bundle.
            None => read_flat_payload(&entry.file_name, folder)?,
        };
        payloads.push(PayloadFacts {
            file_name: entry.file_name.clone(),
            package_type: entry.package_type.clone(),
            facts,
        });
    }
    let mut facts = bundle.identity;
    facts.signature = read_signature(zip, entries)?;
    // A bundle's applications are those of its application payloads, once each.
    for p in payloads.iter().filter(|p| p.package_type == "application") {
        for app in &p.facts.applications {
            if !facts.applications.iter().any(|a| a.id == app.id) {
                facts.applications.push(AppFacts {
                    id: app.id.clone(),
                    display_name: app.display_name.clone(),
                    app_user_model_id: format!("{}!{}", facts.family_name, app.id),
                });
            }
        }
        for dep in &p.facts.dependencies {
            if !facts.dependencies.contains(dep) {
                facts.dependencies.push(dep.clone());
            }
        }
        if facts.display_name.is_none() {
            facts.display_name.clone_from(&p.facts.display_name);
        }
    }
    let kind = if appx {
        PackageKind::AppxBundle
    } else {
        PackageKind::MsixBundle
    };
    Ok(PackageFile {
        kind,
        facts,
        payloads,
    })
}

/// Reads the payload package `file_name` of a flat bundle from `folder`, the bundle's.
fn read_flat_payload(file_name: &str, folder: Option<&Path>) -> Result<PackageFacts> {
    let not_there = |looked: String| {
        Error::new(
            BUNDLE_MANIFEST,
            format!(
                "lists the payload package {file_name:?}, which is neither inside the bundle \
                 nor {looked}: a flat bundle needs its payload packages beside the bundle, \
                 in the same folder; copy {file_name:?} there"
            ),
        )
    };
    let Some(folder) = folder else {
        return Err(not_there(
            "beside it (it was not read from a file, so it has no folder)".into(),
        ));
    };
    let relative = manifest_path(file_name).map_err(|e| e.within(BUNDLE_MANIFEST))?;
    let path = beside(folder, &relative)
        .ok_or_else(|| not_there(format!("beside it at {}", folder.join(&relative).display())))?;
    let shown = path.display().to_string();
    let file = File::open(&path).map_err(|e| Error::new(&shown, format!("cannot open: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Error::new(&shown, format!("cannot read its size: {e}")))?
        .len();
    if size > limits::PAYLOAD_BYTES {
        return Err(Error::new(
            &shown,
            format!("{size} bytes, more than the {} read", limits::PAYLOAD_BYTES),
        ));
    }
    let mut zip = open_zip(BufReader::new(file)).map_err(|e| e.within(&shown))?;
    let entries = Entries::of(&zip);
    read_single(&mut zip, &entries).map_err(|e| e.within(&shown))
}

/// The file at `relative` below `folder`: exactly so named, or else the one name that
/// differs only in ASCII case (Windows, where bundles are made, ignores case).
pub(crate) fn beside(folder: &Path, relative: &Path) -> Option<PathBuf> {
    let exact = folder.join(relative);
    if exact.is_file() {
        return Some(exact);
    }
    let mut path = folder.to_path_buf();
    for part in relative.components() {
        let wanted = part.as_os_str().to_string_lossy().to_ascii_lowercase();
        let found = std::fs::read_dir(&path)
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().to_ascii_lowercase() == wanted)?;
        path = found.path();
    }
    path.is_file().then_some(path)
}

fn read_payload<R: Read + Seek>(zip: &mut ZipArchive<R>, index: usize) -> Result<PackageFacts> {
    let mut entry = zip
        .by_index(index)
        .map_err(|e| Error::new("entry", format!("cannot read: {e}")))?;
    let size = entry.size();
    if size > limits::PAYLOAD_BYTES {
        return Err(Error::new(
            "entry",
            format!("{size} bytes, more than the {} read", limits::PAYLOAD_BYTES),
        ));
    }
    if size <= limits::PAYLOAD_IN_MEMORY {
        let bytes = read_bounded(&mut entry, size, "entry")?;
        drop(entry);
        let mut inner = open_zip(Cursor::new(bytes))?;
        let entries = Entries::of(&inner);
        read_single(&mut inner, &entries)
    } else {
        let mut tmp = tempfile::tempfile()
            .map_err(|e| Error::new("entry", format!("cannot make a temp file: {e}")))?;
        copy_bounded(&mut entry, &mut tmp, size, "entry")?;
        drop(entry);
        tmp.seek(SeekFrom::Start(0))
            .map_err(|e| Error::new("entry", format!("temp file: {e}")))?;
        let mut inner = open_zip(BufReader::new(tmp))?;
        let entries = Entries::of(&inner);
        read_single(&mut inner, &entries)
    }
}

fn open_zip<R: Read + Seek>(source: R) -> Result<ZipArchive<R>> {
    let zip = ZipArchive::new(source).map_err(|e| {
        Error::new(
            "ZIP central directory",
            format!("not a readable ZIP (MSIX/Appx packages are ZIP files): {e}"),
        )
    })?;
    if zip.len() > limits::ENTRIES {
        return Err(Error::new(
            "ZIP central directory",
            format!(
                "{} entries, more than the {} a package may have",
                zip.len(),
                limits::ENTRIES
            ),
        ));
    }
    Ok(zip)
}

/// Reads one named entry, at most `limit` bytes; `None` when the package has no such entry.
fn read_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    entries: &Entries,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    let Some(index) = entries.find(name) else {
        return Ok(None);
    };
    let mut entry = zip
        .by_index(index)
        .map_err(|e| Error::new(name, format!("cannot read the entry: {e}")))?;
    let size = entry.size();
    if size > limit {
        return Err(Error::new(
            name,
            format!("{size} bytes, more than the {limit} read for this entry"),
        ));
    }
    read_bounded(&mut entry, size, name).map(Some)
}

/// Reads an entry whose central directory says `size` bytes, refusing one that inflates
/// to more (a lying header) or fails its CRC.
fn read_bounded(entry: &mut impl Read, size: u64, at: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
    copy_bounded(entry, &mut out, size, at)?;
    Ok(out)
}

/// Copies an entry whose central directory says `size` bytes, refusing one that inflates
/// to more (a lying header) or to less, or fails its CRC.
fn copy_bounded(entry: &mut impl Read, out: &mut impl Write, size: u64, at: &str) -> Result<u64> {
    let copied = io::copy(&mut entry.take(size + 1), out)
        .map_err(|e| Error::new(at, format!("cannot decompress: {e}")))?;
    if copied != size {
        return Err(Error::new(
            at,
            format!(
                "expands to {copied}{} bytes where the ZIP directory says {size}: the package is corrupt",
                if copied > size { "+" } else { "" }
            ),
        ));
    }
    Ok(copied)
}

fn xml(bytes: &[u8]) -> Result<Document<'_>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::new(format!("byte {}", e.valid_up_to()), "not UTF-8 text"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits::XML_NODES,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, options).map_err(|e| {
        let pos = e.pos();
        Error::new(
            format!("line {} column {}", pos.row, pos.col),
            format!("not a valid manifest ({e}); a DTD or entity declaration is refused"),
        )
    })
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

fn element_text(node: Option<Node<'_, '_>>) -> Option<String> {
    node.and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
}

fn required<'a>(node: Node<'a, '_>, attribute: &str) -> Result<&'a str> {
    node.attribute(attribute).ok_or_else(|| {
        Error::new(
            format!("<{}>", node.tag_name().name()),
            format!("has no {attribute} attribute"),
        )
    })
}

fn check_version(version: &str, at: &str) -> Result<()> {
    let parts: Vec<&str> = version.split('.').collect();
    let ok = parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u32>().is_ok_and(|v| v <= 65535));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            at,
            format!("Version {version:?} is not four dot-separated integers, each 0 to 65535"),
        ))
    }
}

fn check_name(name: &str, at: &str) -> Result<()> {
    let ok = (3..=50).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            at,
            format!("Name {name:?} is not 3 to 50 letters, digits, dots and hyphens"),
        ))
    }
}

const ARCHITECTURES: [&str; 6] = ["x86", "x64", "arm", "arm64", "neutral", "x86a64"];

/// The identity of a package or bundle, with its names derived.
fn identity(node: Node<'_, '_>, bundle: bool) -> Result<PackageFacts> {
    let at = "<Identity>";
    let name = required(node, "Name")?.to_string();
    check_name(&name, at)?;
    let publisher = required(node, "Publisher")?.to_string();
    if publisher.trim().is_empty() || publisher.len() > 8192 {
        return Err(Error::new(
            at,
            "Publisher is empty or longer than 8192 characters",
        ));
    }
    let version = required(node, "Version")?.to_string();
    check_version(&version, at)?;
    let architecture = node
        .attribute("ProcessorArchitecture")
        .unwrap_or("neutral")
        .to_ascii_lowercase();
    if !ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(Error::new(
            at,
            format!(
                "ProcessorArchitecture {architecture:?} is not one of {}",
                ARCHITECTURES.join(", ")
            ),
        ));
    }
    // A bundle's full name carries `~` where a package has its resource id.
    let resource_id = match node.attribute("ResourceId") {
        Some(r) => r.to_string(),
        None if bundle => "~".to_string(),
        None => String::new(),
    };
    let publisher_id = publisher_id(&publisher);
    Ok(PackageFacts {
        family_name: format!("{name}_{publisher_id}"),
        full_name: format!("{name}_{version}_{architecture}_{resource_id}_{publisher_id}"),
        name,
        publisher,
        version,
        architecture,
        resource_id,
        publisher_id,
        display_name: None,
        publisher_display_name: None,
        applications: Vec::new(),
        dependencies: Vec::new(),
        target_device_families: Vec::new(),
        signature: None,
    })
}

fn bounded<T>(items: impl Iterator<Item = Result<T>>, what: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for item in items {
        if out.len() == limits::LIST_ITEMS {
            return Err(Error::new(
                what,
                format!("more than {} entries", limits::LIST_ITEMS),
            ));
        }
        out.push(item?);
    }
    Ok(out)
}

/// The root element, which must be `<{root_name}>`, and its `<Identity>`.
fn root_and_identity<'a, 'i>(
    doc: &'a Document<'i>,
    root_name: &str,
) -> Result<(Node<'a, 'i>, Node<'a, 'i>)> {
    let root = doc.root_element();
    let found = root.tag_name().name();
    if found != root_name {
        return Err(Error::new(
            format!("<{found}>"),
            format!("the root element is not <{root_name}>: this is not the manifest expected"),
        ));
    }
    let id = child(root, "Identity").ok_or_else(|| {
        Error::new(
            format!("<{root_name}>"),
            "has no <Identity> element, which names the package (Name, Publisher, Version)",
        )
    })?;
    Ok((root, id))
}

/// Whether a path names a package file by its extension (`.msix`, `.appx`, bundles).
pub fn is_package_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".msix", ".appx", ".msixbundle", ".appxbundle"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Parses an `AppxManifest.xml`.
pub fn parse_manifest(bytes: &[u8]) -> Result<PackageFacts> {
    let doc = xml(bytes)?;
    let (root, id) = root_and_identity(&doc, "Package")?;
    let mut facts = identity(id, false)?;
    if let Some(props) = child(root, "Properties") {
        facts.display_name = element_text(child(props, "DisplayName"));
        facts.publisher_display_name = element_text(child(props, "PublisherDisplayName"));
    }
    if let Some(apps) = child(root, "Applications") {
        let family = facts.family_name.clone();
        facts.applications = bounded(
            children(apps, "Application").map(|app| {
                let id = required(app, "Id")?.to_string();
                let display_name = child(app, "VisualElements")
                    .and_then(|v| v.attribute("DisplayName"))
                    .map(String::from);
                Ok(AppFacts {
                    app_user_model_id: format!("{family}!{id}"),
                    id,
                    display_name,
                })
            }),
            "<Applications>",
        )?;
    }
    if let Some(deps) = child(root, "Dependencies") {
        facts.dependencies = bounded(
            children(deps, "PackageDependency").map(|d| {
                let min_version = required(d, "MinVersion")?.to_string();
                check_version(&min_version, "<PackageDependency>")?;
                Ok(DependencyFacts {
                    name: required(d, "Name")?.to_string(),
                    publisher: required(d, "Publisher")?.to_string(),
                    min_version,
                })
            }),
            "<Dependencies>",
        )?;
        facts.target_device_families = bounded(
            children(deps, "TargetDeviceFamily").map(|d| {
                Ok(DeviceFamily {
                    name: required(d, "Name")?.to_string(),
                    min_version: required(d, "MinVersion")?.to_string(),
                    max_version_tested: d.attribute("MaxVersionTested").map(String::from),
                })
            }),
            "<Dependencies>",
        )?;
    }
    Ok(facts)
}

/// A bundle manifest: the bundle's identity and its payload packages.
struct BundleManifest {
    identity: PackageFacts,
    packages: Vec<BundleEntry>,
}

struct BundleEntry {
    file_name: String,
    package_type: String,
}

fn parse_bundle_manifest(bytes: &[u8]) -> Result<BundleManifest> {
    let doc = xml(bytes)?;
    let (root, id) = root_and_identity(&doc, "Bundle")?;
    let identity = identity(id, true)?;
    let packages = child(root, "Packages")
        .map(|p| {
            bounded(
                children(p, "Package").map(|p| {
                    // The file's name, decoded: not %-encoded as its ZIP entry is.
                    let file_name = required(p, "FileName")?.to_string();
                    manifest_path(&file_name)?;
                    Ok(BundleEntry {
                        file_name,
                        package_type: p.attribute("Type").unwrap_or("application").to_string(),
                    })
                }),
                "<Packages>",
            )
        })
        .transpose()?
        .unwrap_or_default();
    if packages.is_empty() {
        return Err(Error::new(
            "<Packages>",
            "the bundle lists no payload package",
        ));
    }
    if packages.len() > limits::PAYLOADS {
        return Err(Error::new(
            "<Packages>",
            format!(
                "{} payload packages, more than the {} read",
                packages.len(),
                limits::PAYLOADS
            ),
        ));
    }
    Ok(BundleManifest { identity, packages })
}

/// The path a ZIP entry name stands for (its %-escapes decoded), refusing names that
/// leave the package folder.
fn check_entry_name(name: &str) -> Result<PathBuf> {
    let decoded = decode_entry_name(name).ok_or_else(|| {
        Error::new(
            format!("entry {name:?}"),
            "has a bad %-escape in its name (OPC names are %-encoded UTF-8)",
        )
    })?;
    relative_path(&decoded, &format!("entry {name:?}"))
}

/// The path a file name of a manifest stands for (already decoded: a `%` in it is a
/// `%`), refusing names that leave the package folder.
pub(crate) fn manifest_path(name: &str) -> Result<PathBuf> {
    relative_path(name, &format!("FileName {name:?}"))
}

/// A decoded name as a relative path, refusing names that leave the folder.
fn relative_path(decoded: &str, at: &str) -> Result<PathBuf> {
    let unix = decoded.replace('\\', "/");
    let bad = |why: &str| Err(Error::new(at, why.to_string()));
    if unix.is_empty() || unix.contains('\0') {
        return bad("has an empty name or a NUL in it");
    }
    if unix.starts_with('/') || unix.as_bytes().get(1) == Some(&b':') {
        return bad("is an absolute path: a package's entries are relative to its folder");
    }
    let path = Path::new(&unix);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return bad("has a '..' or root component, which would leave the package folder"),
        }
    }
    if out.as_os_str().is_empty() {
        return bad("names no file");
    }
    Ok(out)
}

/// Decodes a ZIP entry name's OPC %-escapes (UTF-8); `None` for a `%` not followed by two
/// hex digits, or bytes that are not UTF-8.
pub(crate) fn decode_entry_name(name: &str) -> Option<String> {
    let escapes_ok = name.match_indices('%').all(|(i, _)| {
        name.get(i + 1..i + 3)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !escapes_ok {
        return None;
    }
    percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

/// Expands a package into `dest` as msixmgr does: every entry but `[Content_Types].xml`,
/// names %-decoded. Returns the bytes written. Refuses entries that would leave `dest`,
/// a lying size, and a compression ratio that gives away a ZIP bomb.
pub fn expand_to(path: &Path, dest: &Path) -> Result<u64> {
    let file =
        File::open(path).map_err(|e| Error::new(path.display(), format!("cannot open: {e}")))?;
    expand_from(BufReader::new(file), dest).map_err(|e| e.within(path.display()))
}

/// [`expand_to`] from any seekable source.
pub fn expand_from<R: Read + Seek>(source: R, dest: &Path) -> Result<u64> {
    let mut zip = open_zip(source)?;
    let mut total = 0u64;
    for index in 0..zip.len() {
        let mut entry = zip
            .by_index(index)
            .map_err(|e| Error::new(format!("entry #{index}"), format!("cannot read: {e}")))?;
        let raw = entry
            .name()
            .map_err(|e| Error::new(format!("entry #{index}"), format!("bad name: {e}")))?
            .to_string();
        if raw.eq_ignore_ascii_case(CONTENT_TYPES) || raw.ends_with('/') {
            continue;
        }
        let relative = check_entry_name(&raw)?;
        let at = format!("entry {raw:?}");
        let size = entry.size();
        let ratio_cap = entry
            .compressed_size()
            .saturating_mul(limits::COMPRESSION_RATIO)
            .saturating_add(1 << 20);
        if size > ratio_cap {
            return Err(Error::new(
                &at,
                format!(
                    "expands {} bytes to {size}: a ratio beyond {}:1 is refused as a ZIP bomb",
                    entry.compressed_size(),
                    limits::COMPRESSION_RATIO
                ),
            ));
        }
        total = total.saturating_add(size);
        if total > limits::EXPANDED_BYTES {
            return Err(Error::new(
                &at,
                format!(
                    "the package expands to more than {} bytes",
                    limits::EXPANDED_BYTES
                ),
            ));
        }
        let target = dest.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::new(&at, format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut out = File::create(&target)
            .map_err(|e| Error::new(&at, format!("cannot create {}: {e}", target.display())))?;
        copy_bounded(&mut entry, &mut out, size, &at)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(identity: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<Package xmlns="http://schemas.microsoft.com/appx/manifest/foundation/windows10"
         xmlns:uap="http://schemas.microsoft.com/appx/manifest/uap/windows10">
  {identity}
  <Properties><DisplayName>Contoso Expenses</DisplayName>
    <PublisherDisplayName>Contoso</PublisherDisplayName></Properties>
  <Dependencies>
    <TargetDeviceFamily Name="Windows.Desktop" MinVersion="10.0.17763.0" MaxVersionTested="10.0.22621.0"/>
    <PackageDependency Name="Microsoft.VCLibs.140.00.UWPDesktop" Publisher="CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US" MinVersion="14.0.24217.0"/>
  </Dependencies>
  <Applications>
    <Application Id="App" Executable="expenses.exe" EntryPoint="Windows.FullTrustApplication">
      <uap:VisualElements DisplayName="Expenses" Description="x" BackgroundColor="transparent" Square150x150Logo="a.png" Square44x44Logo="b.png"/>
    </Application>
  </Applications>
</Package>"#
        )
    }

    #[test]
    fn manifest_facts_and_derived_names() {
        let m = manifest(
            r#"<Identity Name="Contoso.Expenses" Publisher="CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US" Version="2.4.1.0" ProcessorArchitecture="x64"/>"#,
        );
        let f = parse_manifest(m.as_bytes()).expect("parses");
        assert_eq!(f.publisher_id, "8wekyb3d8bbwe");
        assert_eq!(f.family_name, "Contoso.Expenses_8wekyb3d8bbwe");
        assert_eq!(f.full_name, "Contoso.Expenses_2.4.1.0_x64__8wekyb3d8bbwe");
        assert_eq!(f.display_name.as_deref(), Some("Contoso Expenses"));
        assert_eq!(f.applications.len(), 1);
        assert_eq!(
            f.applications[0].app_user_model_id,
            "Contoso.Expenses_8wekyb3d8bbwe!App"
        );
        assert_eq!(f.applications[0].display_name.as_deref(), Some("Expenses"));
        assert_eq!(f.dependencies[0].min_version, "14.0.24217.0");
        assert_eq!(f.target_device_families[0].min_version, "10.0.17763.0");
    }

    #[test]
    fn a_missing_architecture_is_neutral_and_a_resource_id_is_kept() {
        let m = manifest(
            r#"<Identity Name="Contoso.Lang" Publisher="CN=Contoso" Version="1.0.0.0" ResourceId="fr"/>"#,
        );
        let f = parse_manifest(m.as_bytes()).expect("parses");
        assert_eq!(f.architecture, "neutral");
        assert!(
            f.full_name.starts_with("Contoso.Lang_1.0.0.0_neutral_fr_"),
            "{}",
            f.full_name
        );
    }

    #[test]
    fn bad_manifests_say_what_and_where() {
        let cases = [
            (manifest(""), "<Identity>"),
            (manifest(r#"<Identity Publisher="CN=x" Version="1.0.0.0"/>"#), "Name"),
            (manifest(r#"<Identity Name="Contoso.A" Publisher="CN=x" Version="1.0.0"/>"#), "four"),
            (manifest(r#"<Identity Name="Contoso.A" Publisher="CN=x" Version="1.0.0.70000"/>"#), "65535"),
            (manifest(r#"<Identity Name="Contoso.A" Publisher="CN=x" Version="1.0.0.0" ProcessorArchitecture="mips"/>"#), "mips"),
            ("<?xml version=\"1.0\"?><!DOCTYPE lol [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><Package>&b;</Package>".to_string(), "DTD"),
            ("<Package><Identity".to_string(), "line 1"),
            ("<Bundle/>".to_string(), "not <Package>"),
        ];
        for (text, expected) in cases {
            let err = parse_manifest(text.as_bytes())
                .expect_err("refused")
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
        let err = parse_manifest(&[0xff, 0xfe, 0x00])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn entry_names_that_leave_the_folder_are_refused() {
        for bad in [
            "../evil.dll",
            "a/../../evil",
            "/etc/passwd",
            "\\windows\\x",
            "C:/x",
            "a/%2e%2e/%2e%2e/x",
            "%zz",
            "",
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            check_entry_name("Assets/My%20Logo.png").expect("fine"),
            PathBuf::from("Assets/My Logo.png")
        );
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        for (name, bytes) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            w.start_file(*name, options).expect("entry");
            w.write_all(bytes).expect("bytes");
        }
        w.finish().expect("zip");
        out.into_inner()
    }

    #[test]
    fn a_zip_bomb_is_refused_before_it_is_expanded() {
        let zeros = vec![0u8; 16 << 20];
        let bomb = zip_of(&[("AppxManifest.xml", b"<Package/>"), ("zeros.bin", &zeros)]);
        assert!(bomb.len() < 1 << 20, "the bomb is small: {}", bomb.len());
        let dest = tempfile::tempdir().expect("tempdir");
        let err = expand_from(Cursor::new(bomb), dest.path())
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("zeros.bin") && err.contains("ZIP bomb"),
            "{err}"
        );
        assert!(!dest.path().join("zeros.bin").exists());
        // A manifest too large to be one is not read at all.
        let huge = vec![b' '; (limits::MANIFEST_BYTES + 1) as usize];
        let err = read_package_from(Cursor::new(zip_of(&[(MANIFEST, &huge)])), "x.msix")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("AppxManifest.xml") && err.contains("more than"),
            "{err}"
        );
    }

    #[test]
    fn a_lying_size_is_refused() {
        let manifest =
            manifest(r#"<Identity Name="Contoso.A" Publisher="CN=x" Version="1.0.0.0"/>"#);
        let mut bytes = zip_of(&[(MANIFEST, manifest.as_bytes())]);
        // Lower the uncompressed size in the central directory (offset 24 of its record).
        let cd = bytes
            .windows(4)
            .rposition(|w| w == b"PK\x01\x02")
            .expect("a central directory record");
        bytes[cd + 24..cd + 28].copy_from_slice(&10u32.to_le_bytes());
        let err = read_package_from(Cursor::new(bytes), "x.msix").expect_err("refused");
        assert!(err.to_string().contains("AppxManifest.xml"), "{err}");
    }

    #[test]
    fn entries_that_leave_the_folder_stop_the_expansion() {
        let bytes = zip_of(&[
            ("AppxManifest.xml", b"<Package/>"),
            ("../../evil.dll", b"MZ"),
        ]);
        let root = tempfile::tempdir().expect("tempdir");
        let dest = root.path().join("a/b");
        let err = expand_from(Cursor::new(bytes), &dest)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("evil.dll") && err.contains(".."), "{err}");
        assert!(!root.path().join("evil.dll").exists());
    }

    #[test]
    fn entries_are_found_by_the_names_they_stand_for() {
        let manifest =
            manifest(r#"<Identity Name="Contoso.A" Publisher="CN=x" Version="1.0.0.0"/>"#);
        let bytes = zip_of(&[
            ("appxmanifest.XML", manifest.as_bytes()),
            ("%E0%A4%AE%E0%A4%B9%E0%A4%B8%E0%A5%81%E0%A4%B8.appx", b"x"),
            ("Notes%20100%25.appx", b"y"),
            ("bad%zz.appx", b"z"),
        ]);
        let zip = open_zip(Cursor::new(bytes.clone())).unwrap();
        let entries = Entries::of(&zip);
        assert_eq!(
            entries.find("AppxManifest.xml"),
            Some(0),
            "ASCII case is ignored"
        );
        assert_eq!(entries.find("महसुस.appx"), Some(1));
        assert_eq!(entries.find("Notes 100%.appx"), Some(2));
        assert_eq!(entries.find("bad%zz.appx"), None);
        let facts = read_package_from(Cursor::new(bytes), "a.msix")
            .unwrap()
            .facts;
        assert_eq!(facts.name, "Contoso.A");
    }

    #[test]
    fn manifest_file_names_are_decoded_already() {
        assert_eq!(
            manifest_path("Notes 100%.appx").unwrap(),
            PathBuf::from("Notes 100%.appx")
        );
        assert_eq!(
            manifest_path(r"x64\Notes.appx").unwrap(),
            PathBuf::from("x64/Notes.appx")
        );
        assert!(manifest_path(r"..\Notes.appx").is_err());
    }

    #[test]
    fn a_flat_bundle_not_read_from_a_file_says_where_its_payloads_belong() {
        let bundle = r#"<Bundle xmlns="http://schemas.microsoft.com/appx/2013/bundle" SchemaVersion="5.0">
  <Identity Name="Contoso.A" Publisher="CN=x" Version="1.0.0.0"/>
  <Packages><Package Type="application" FileName="A_x64.msix"/></Packages></Bundle>"#;
        let bytes = zip_of(&[(BUNDLE_MANIFEST, bundle.as_bytes())]);
        let err = read_package_from(Cursor::new(bytes), "a.msixbundle")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("\"A_x64.msix\"") && err.contains("flat bundle needs its payload"),
            "{err}"
        );
    }

    #[test]
    fn not_a_zip_is_said_so() {
        let err = read_package_from(Cursor::new(b"PK\x03\x04 truncated".to_vec()), "x.msix")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("not a readable ZIP"), "{err}");
    }
}
