//! Test data made by the tests, never downloaded: throwaway certificates from the `openssl`
//! CLI, MSIX/Appx packages and bundles zipped with real manifests, block maps and content
//! types, and package signatures from `osslsigncode`.
//!
//! ```ignore
//! let tmp = tempfile::tempdir().unwrap();
//! let certs = Certs::make(tmp.path());
//! let xml = manifest("Contoso.Notes", &certs.code_signing.subject, "1.2.3.0", Some("x64"),
//!     &[("App", "Notes")], &[]);
//! let unsigned = build_package(tmp.path(), "notes.msix", &xml, &[("Notes.exe", b"MZ")]);
//! let signed = sign(&unsigned, &certs.code_signing, None);
//! let p7x = extract_signature(&signed);
//! ```

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use appattach_operator::inspect::tools;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Where `AppxSignature.p7x` is in a signed package.
pub const SIGNATURE_ENTRY: &str = "AppxSignature.p7x";
/// The foundation namespace of `AppxManifest.xml` (Windows 10).
pub const FOUNDATION_NS: &str = "http://schemas.microsoft.com/appx/manifest/foundation/windows10";
/// The UAP namespace of `AppxManifest.xml`.
pub const UAP_NS: &str = "http://schemas.microsoft.com/appx/manifest/uap/windows10";
/// The restricted capabilities namespace (`runFullTrust`).
pub const RESCAP_NS: &str =
    "http://schemas.microsoft.com/appx/manifest/foundation/windows10/restrictedcapabilities";
/// The namespace of `AppxBlockMap.xml`.
pub const BLOCKMAP_NS: &str = "http://schemas.microsoft.com/appx/2010/blockmap";
/// The namespace of `AppxBundleManifest.xml`.
pub const BUNDLE_NS: &str = "http://schemas.microsoft.com/appx/2013/bundle";
/// Block size of `AppxBlockMap.xml`.
pub const BLOCK_BYTES: usize = 64 * 1024;

// ---- certificates --------------------------------------------------------------------

/// A throwaway certificate and its key, with what `openssl x509` says about it.
#[derive(Debug, Clone)]
pub struct Cert {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key (RSA 2048), PEM, unencrypted.
    pub key: PathBuf,
    /// The subject as openssl prints it with `-nameopt RFC2253,sep_comma_plus_space`:
    /// most specific first, `, ` between attributes (`CN=Contoso Ltd, O=Contoso Ltd, C=US`);
    /// for CN, O, OU, L and C this is also how Windows writes it (openssl writes `ST` where
    /// Windows writes `S`).
    pub subject: String,
    /// The issuer, in the same form.
    pub issuer: String,
    /// SHA-1 fingerprint (`openssl x509 -fingerprint -sha1`), 40 uppercase hex digits.
    pub thumbprint: String,
    /// Serial number (`openssl x509 -serial`), uppercase hex.
    pub serial: String,
    /// notBefore (`openssl x509 -dates`).
    pub not_before: jiff::Timestamp,
    /// notAfter (`openssl x509 -dates`).
    pub not_after: jiff::Timestamp,
}

/// The throwaway certificates, written into a test's folder by [`Certs::make`]. All but
/// the CA are issued by the CA.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The issuing CA: `CN=Contoso Test CA, OU=Testing, O=Contoso Ltd, L=Redmond,
    /// ST=Washington, C=US`, 2019 to 2039.
    pub ca: Cert,
    /// Code signing (EKU codeSigning): `CN=Contoso Ltd, O=Contoso Ltd, C=US`, valid from a
    /// day ago for a year.
    pub code_signing: Cert,
    /// Code signing, expired: `CN=Contoso Expired, O=Contoso Ltd, C=US`, 2020-01-01 to
    /// 2021-01-01.
    pub expired: Cert,
    /// Not for code signing (EKU serverAuth): `CN=server.contoso.com, O=Contoso Ltd, C=US`.
    pub server: Cert,
    /// A timestamp authority for osslsigncode's built-in TSA (EKU timeStamping, critical):
    /// `CN=Contoso Timestamp, O=Contoso Ltd, C=US`, 2019 to 2039.
    pub tsa: Cert,
}

/// The subject of [`Certs::code_signing`], as Windows writes it.
pub const CODE_SIGNING_SUBJECT: &str = "CN=Contoso Ltd, O=Contoso Ltd, C=US";
/// The subject of [`Certs::ca`], as Windows writes it.
pub const CA_SUBJECT_WINDOWS: &str =
    "CN=Contoso Test CA, OU=Testing, O=Contoso Ltd, L=Redmond, S=Washington, C=US";

/// The certificate files and facts, made once per test process.
struct Generated {
    files: Vec<(String, Vec<u8>)>,
    certs: Certs,
}

static GENERATED: OnceLock<Generated> = OnceLock::new();

impl Certs {
    /// Writes the throwaway certificates and keys into `dir` (`ca.pem`, `ca.key`,
    /// `code_signing.pem`, `leaf.key`, ...). They are made with `openssl` once per test
    /// process (RSA keys take a while) and copied into each folder asked for.
    pub fn make(dir: &Path) -> Certs {
        let generated = GENERATED.get_or_init(generate);
        for (name, bytes) in &generated.files {
            fs::write(dir.join(name), bytes).unwrap();
        }
        let certs = &generated.certs;
        let at = |c: &Cert| Cert {
            cert: dir.join(&c.cert),
            key: dir.join(&c.key),
            ..c.clone()
        };
        Certs {
            ca: at(&certs.ca),
            code_signing: at(&certs.code_signing),
            expired: at(&certs.expired),
            server: at(&certs.server),
            tsa: at(&certs.tsa),
        }
    }
}

const CA_CONFIG: &str = "\
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = index.txt
serial = serial
new_certs_dir = .
default_md = sha256
policy = anything
unique_subject = no
email_in_dn = no
[anything]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[code_signing_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:server.contoso.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[tsa_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// One certificate to issue: file stem, subject (`openssl -subj`), extension section,
/// validity (`openssl ca -startdate/-enddate`).
struct Issue<'a> {
    stem: &'a str,
    subj: &'a str,
    extensions: &'a str,
    start: String,
    end: String,
}

fn generate() -> Generated {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("ca.cnf"), CA_CONFIG).unwrap();
    fs::write(dir.join("index.txt"), "").unwrap();
    fs::write(dir.join("serial"), "01\n").unwrap();
    for key in ["ca.key", "leaf.key"] {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                key,
            ],
        );
    }
    let now = jiff::Timestamp::now();
    let day = jiff::SignedDuration::from_hours(24);
    let asn1 = |t: jiff::Timestamp| t.strftime("%Y%m%d%H%M%SZ").to_string();
    let long = || ("20190101000000Z".to_string(), "20391231235959Z".to_string());
    let issues = [
        Issue {
            stem: "ca",
            subj: "/C=US/ST=Washington/L=Redmond/O=Contoso Ltd/OU=Testing/CN=Contoso Test CA",
            extensions: "ca_ext",
            start: long().0,
            end: long().1,
        },
        Issue {
            stem: "code_signing",
            subj: "/C=US/O=Contoso Ltd/CN=Contoso Ltd",
            extensions: "code_signing_ext",
            start: asn1(now - day),
            end: asn1(now + day * 365),
        },
        Issue {
            stem: "expired",
            subj: "/C=US/O=Contoso Ltd/CN=Contoso Expired",
            extensions: "code_signing_ext",
            start: "20200101000000Z".to_string(),
            end: "20210101000000Z".to_string(),
        },
        Issue {
            stem: "server",
            subj: "/C=US/O=Contoso Ltd/CN=server.contoso.com",
            extensions: "server_ext",
            start: asn1(now - day),
            end: asn1(now + day * 365),
        },
        Issue {
            stem: "tsa",
            subj: "/C=US/O=Contoso Ltd/CN=Contoso Timestamp",
            extensions: "tsa_ext",
            start: long().0,
            end: long().1,
        },
    ];
    let mut made = Vec::new();
    for issue in &issues {
        issue_certificate(dir, issue);
        let key = if issue.stem == "ca" {
            "ca.key"
        } else {
            "leaf.key"
        };
        made.push(describe(dir, &format!("{}.pem", issue.stem), key));
    }
    let mut files = Vec::new();
    for name in ["ca.key", "leaf.key"]
        .into_iter()
        .map(String::from)
        .chain(issues.iter().map(|i| format!("{}.pem", i.stem)))
    {
        files.push((name.clone(), fs::read(dir.join(&name)).unwrap()));
    }
    let mut made = made.into_iter();
    let mut next = || made.next().unwrap();
    Generated {
        files,
        certs: Certs {
            ca: next(),
            code_signing: next(),
            expired: next(),
            server: next(),
            tsa: next(),
        },
    }
}

/// Issues one certificate with `openssl ca` (the CA itself with `-selfsign`).
fn issue_certificate(dir: &Path, issue: &Issue<'_>) {
    let key = if issue.stem == "ca" {
        "ca.key"
    } else {
        "leaf.key"
    };
    let csr = format!("{}.csr", issue.stem);
    let pem = format!("{}.pem", issue.stem);
    openssl(
        dir,
        &[
            "req", "-new", "-key", key, "-subj", issue.subj, "-out", &csr,
        ],
    );
    let mut args = vec![
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-rand_serial",
        "-preserveDN",
        "-notext",
        "-extensions",
        issue.extensions,
        "-startdate",
        &issue.start,
        "-enddate",
        &issue.end,
        "-in",
        &csr,
        "-out",
        &pem,
    ];
    if issue.stem == "ca" {
        args.extend(["-selfsign", "-keyfile", "ca.key"]);
    } else {
        args.extend(["-cert", "ca.pem", "-keyfile", "ca.key"]);
    }
    openssl(dir, &args);
}

/// What `openssl x509` says about a certificate.
fn describe(dir: &Path, pem: &str, key: &str) -> Cert {
    let out = openssl(
        dir,
        &[
            "x509",
            "-in",
            pem,
            "-noout",
            "-subject",
            "-issuer",
            "-fingerprint",
            "-sha1",
            "-serial",
            "-dates",
            "-nameopt",
            "RFC2253,sep_comma_plus_space",
            "-dateopt",
            "iso_8601",
        ],
    );
    let field = |prefix: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("openssl x509 printed no {prefix:?}:\n{out}"))
            .trim()
            .to_string()
    };
    let date = |prefix: &str| -> jiff::Timestamp {
        let text = field(prefix);
        text.parse()
            .unwrap_or_else(|e| panic!("openssl's date {text:?}: {e}"))
    };
    Cert {
        cert: PathBuf::from(pem),
        key: PathBuf::from(key),
        subject: field("subject="),
        issuer: field("issuer="),
        thumbprint: field("sha1 Fingerprint=").replace(':', ""),
        serial: field("serial="),
        not_before: date("notBefore="),
        not_after: date("notAfter="),
    }
}

// ---- the Debian tools ---------------------------------------------------------------

/// What a test says when a Debian tool it runs is missing: one line naming the tool and
/// the Debian package to install, from the product's one table of them.
pub fn missing_tool(name: &str) -> String {
    format!(
        "{name} not found: {}, or run bash .ci/install-test-tools",
        tools::install_advice(name)
    )
}

/// Where the Debian tool `name` is (on `PATH` or in the sbin folders); a missing one fails
/// the test with [`missing_tool`]'s one line, never with a bare "No such file".
pub fn tool(name: &str) -> PathBuf {
    tools::locate(name).unwrap_or_else(|| panic!("{}", missing_tool(name)))
}

/// [`tool`], looking in `dirs` only.
pub fn tool_in(name: &str, dirs: &[PathBuf]) -> PathBuf {
    tools::locate_in(name, dirs.iter().cloned()).unwrap_or_else(|| panic!("{}", missing_tool(name)))
}

/// A command running the Debian tool `name`.
pub fn command(name: &str) -> Command {
    Command::new(tool(name))
}

/// Fails the test with [`missing_tool`]'s line unless each of `names` is there: for a test
/// that runs them through the product (`appattach image create`).
pub fn require_tools(names: &[&str]) {
    for name in names {
        tool(name);
    }
}

/// Runs `openssl` in `dir`; fails the test with its output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    run(command("openssl").current_dir(dir).args(args))
}

/// Runs a command; fails the test with its stderr when it fails; its stdout.
pub fn run(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- manifests -----------------------------------------------------------------------

/// Escapes text for an XML attribute value or element.
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A real `AppxManifest.xml` for a desktop (full trust) app package: Identity (`arch` as
/// ProcessorArchitecture when given), Properties (DisplayName `name`, PublisherDisplayName
/// `Contoso`, Logo), `TargetDeviceFamily Windows.Desktop 10.0.17763.0`, one
/// PackageDependency per `deps` entry (Name, Publisher, MinVersion), and one Application
/// per `apps` entry (Id, VisualElements DisplayName) running `<Id>.exe`.
pub fn manifest(
    name: &str,
    publisher: &str,
    version: &str,
    arch: Option<&str>,
    apps: &[(&str, &str)],
    deps: &[(&str, &str, &str)],
) -> String {
    let e = xml_escape;
    let arch = arch
        .map(|a| format!(" ProcessorArchitecture=\"{}\"", e(a)))
        .unwrap_or_default();
    let mut xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Package xmlns="{FOUNDATION_NS}" xmlns:uap="{UAP_NS}" xmlns:rescap="{RESCAP_NS}" IgnorableNamespaces="uap rescap">
  <Identity Name="{}" Publisher="{}" Version="{}"{arch} />
  <Properties>
    <DisplayName>{}</DisplayName>
    <PublisherDisplayName>Contoso</PublisherDisplayName>
    <Logo>Assets\StoreLogo.png</Logo>
  </Properties>
  <Dependencies>
    <TargetDeviceFamily Name="Windows.Desktop" MinVersion="10.0.17763.0" MaxVersionTested="10.0.22621.0" />
"#,
        e(name),
        e(publisher),
        e(version),
        e(name),
    );
    for (dep, dep_publisher, min_version) in deps {
        let _ = writeln!(
            xml,
            r#"    <PackageDependency Name="{}" Publisher="{}" MinVersion="{}" />"#,
            e(dep),
            e(dep_publisher),
            e(min_version)
        );
    }
    xml.push_str(
        r#"  </Dependencies>
  <Resources>
    <Resource Language="en-us" />
  </Resources>
  <Capabilities>
    <rescap:Capability Name="runFullTrust" />
  </Capabilities>
  <Applications>
"#,
    );
    for (id, display) in apps {
        let _ = writeln!(
            xml,
            r#"    <Application Id="{id}" Executable="{id}.exe" EntryPoint="Windows.FullTrustApplication">
      <uap:VisualElements DisplayName="{display}" Description="{display}" BackgroundColor="transparent" Square150x150Logo="Assets\Square150x150Logo.png" Square44x44Logo="Assets\Square44x44Logo.png" />
    </Application>"#,
            id = e(id),
            display = e(display)
        );
    }
    xml.push_str("  </Applications>\n</Package>\n");
    xml
}

/// A bundle's `AppxMetadata/AppxBundleManifest.xml`; `packages` are (file name, arch,
/// offset of its data in the bundle, size).
pub fn bundle_manifest(
    name: &str,
    publisher: &str,
    version: &str,
    packages: &[(String, String, u64, u64)],
) -> String {
    let e = xml_escape;
    let mut xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="{BUNDLE_NS}" SchemaVersion="5.0">
  <Identity Name="{}" Publisher="{}" Version="{}" />
  <Packages>
"#,
        e(name),
        e(publisher),
        e(version)
    );
    for (file_name, arch, offset, size) in packages {
        let _ = writeln!(
            xml,
            r#"    <Package Type="application" Version="{}" Architecture="{}" FileName="{}" Offset="{offset}" Size="{size}">
      <Resources>
        <Resource Language="en-us" />
      </Resources>
    </Package>"#,
            e(version),
            e(arch),
            e(file_name)
        );
    }
    xml.push_str("  </Packages>\n</Bundle>\n");
    xml
}

// ---- packages ------------------------------------------------------------------------

/// The ZIP entry name of a file in a package: OPC part names are percent-encoded UTF-8
/// (`महसुस.appx` is `%E0%A4%AE...%A4%B8.appx`, a space `%20`, `%` itself `%25`), as
/// MakeAppx writes them.
pub fn opc_entry_name(file_name: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const PART_NAME: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    utf8_percent_encode(file_name, PART_NAME).to_string()
}

/// `AppxBlockMap.xml` for `files` (file name with `/`, bytes): per file its name as
/// Windows writes it (`\`, not %-encoded), Size, LfhSize (30 + the length of its ZIP
/// entry name: no extra field) and the base64 SHA-256 of each 64 KiB block.
pub fn block_map(files: &[(&str, &[u8])]) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n\
         <BlockMap xmlns=\"{BLOCKMAP_NS}\" HashMethod=\"http://www.w3.org/2001/04/xmlenc#sha256\">"
    );
    for (name, bytes) in files {
        let _ = write!(
            xml,
            "<File Name=\"{}\" Size=\"{}\" LfhSize=\"{}\">",
            xml_escape(&name.replace('/', "\\")),
            bytes.len(),
            30 + opc_entry_name(name).len()
        );
        for block in bytes.chunks(BLOCK_BYTES) {
            let _ = write!(xml, "<Block Hash=\"{}\"/>", base64(&Sha256::digest(block)));
        }
        xml.push_str("</File>");
    }
    xml.push_str("</BlockMap>");
    xml
}

/// `[Content_Types].xml`: a Default per extension of `names` and an Override for each
/// `overrides` (part name without the leading `/`, content type) and for names without
/// an extension.
pub fn content_types(names: &[&str], overrides: &[(&str, &str)]) -> String {
    let mut defaults: Vec<(String, &str)> = Vec::new();
    let mut parts: Vec<(String, String)> = overrides
        .iter()
        .map(|(p, t)| ((*p).to_string(), (*t).to_string()))
        .collect();
    for name in names {
        let file = name.rsplit('/').next().unwrap_or(name);
        match file.rsplit_once('.') {
            Some((_, ext)) if !ext.is_empty() => {
                let ext = ext.to_ascii_lowercase();
                if !defaults.iter().any(|(e, _)| *e == ext) {
                    let kind = content_type(&ext);
                    defaults.push((ext, kind));
                }
            }
            _ => parts.push((opc_entry_name(name), "application/octet-stream".to_string())),
        }
    }
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
         <Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">",
    );
    for (ext, kind) in defaults {
        let _ = write!(
            xml,
            "<Default Extension=\"{}\" ContentType=\"{kind}\"/>",
            xml_escape(&ext)
        );
    }
    for (part, kind) in parts {
        let _ = write!(
            xml,
            "<Override PartName=\"/{}\" ContentType=\"{}\"/>",
            xml_escape(&part),
            xml_escape(&kind)
        );
    }
    xml.push_str("</Types>");
    xml
}

fn content_type(ext: &str) -> &'static str {
    match ext {
        "xml" => "application/xml",
        "exe" | "dll" => "application/x-msdownload",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "txt" => "text/plain",
        "json" => "application/json",
        "msix" | "appx" => "application/vnd.ms-appx",
        _ => "application/octet-stream",
    }
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn stored() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Stored)
}

/// Zips `entries` (file name, bytes, options) into `path`, in that order, each under its
/// OPC entry name ([`opc_entry_name`]).
fn write_zip(path: &Path, entries: &[(&str, &[u8], SimpleFileOptions)]) {
    let mut zip = ZipWriter::new(File::create(path).unwrap());
    for (name, bytes, options) in entries {
        let name = if *name == "[Content_Types].xml" {
            (*name).to_string() // not a part: its name is as it is
        } else {
            opc_entry_name(name)
        };
        zip.start_file(name, *options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// Makes an unsigned MSIX/Appx package `dir/file_name`: `AppxManifest.xml`, the payload
/// files (file names with `/`, zipped under their OPC entry names), then a real `AppxBlockMap.xml` (covering the manifest
/// and the payload) and `[Content_Types].xml`, all deflated.
pub fn build_package(
    dir: &Path,
    file_name: &str,
    manifest_xml: &str,
    payload: &[(&str, &[u8])],
) -> PathBuf {
    build_package_with_catalog(dir, file_name, manifest_xml, payload, None)
}

/// [`build_package`], with `AppxMetadata/CodeIntegrity.cat` holding `catalog` when given
/// (a footprint file: not in the block map; the signature carries its digest, AXCI).
pub fn build_package_with_catalog(
    dir: &Path,
    file_name: &str,
    manifest_xml: &str,
    payload: &[(&str, &[u8])],
    catalog: Option<&[u8]>,
) -> PathBuf {
    let mut files: Vec<(&str, &[u8])> = vec![("AppxManifest.xml", manifest_xml.as_bytes())];
    files.extend_from_slice(payload);
    let block_map = block_map(&files);
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    let types = content_types(
        &names,
        &[
            ("AppxManifest.xml", "application/vnd.ms-appx.manifest+xml"),
            ("AppxBlockMap.xml", "application/vnd.ms-appx.blockmap+xml"),
        ],
    );
    let mut entries: Vec<(&str, &[u8], SimpleFileOptions)> =
        files.iter().map(|(n, b)| (*n, *b, deflated())).collect();
    if let Some(catalog) = catalog {
        entries.push(("AppxMetadata/CodeIntegrity.cat", catalog, deflated()));
    }
    entries.push(("AppxBlockMap.xml", block_map.as_bytes(), deflated()));
    entries.push(("[Content_Types].xml", types.as_bytes(), deflated()));
    let path = dir.join(file_name);
    write_zip(&path, &entries);
    keep_seed("package", &path);
    path
}

/// Makes an unsigned bundle `dir/file_name` (`.msixbundle`/`.appxbundle`): the payload
/// packages (path, architecture), stored, under their file names, then
/// `AppxMetadata/AppxBundleManifest.xml` (Identity `name`, `publisher`, `version`; each
/// payload a `Package Type="application"` with its Offset and Size in the bundle),
/// `AppxBlockMap.xml` and `[Content_Types].xml`.
pub fn build_bundle(
    dir: &Path,
    file_name: &str,
    payloads: &[(&Path, &str)],
    name: &str,
    publisher: &str,
    version: &str,
) -> PathBuf {
    let files: Vec<(String, Vec<u8>)> = payloads
        .iter()
        .map(|(p, _)| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(p).unwrap())
        })
        .collect();
    // Stored entries without extra fields: the data follows a 30-byte header and the name.
    let mut offset = 0_u64;
    let mut listed = Vec::new();
    for ((file, bytes), (_, arch)) in files.iter().zip(payloads) {
        let data = offset + 30 + opc_entry_name(file).len() as u64;
        listed.push((file.clone(), (*arch).to_string(), data, bytes.len() as u64));
        offset = data + bytes.len() as u64;
    }
    let manifest = bundle_manifest(name, publisher, version, &listed);
    const BUNDLE_MANIFEST: &str = "AppxMetadata/AppxBundleManifest.xml";
    let mut mapped: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    mapped.push((BUNDLE_MANIFEST, manifest.as_bytes()));
    let block_map = block_map(&mapped);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let types = content_types(
        &names,
        &[
            (
                BUNDLE_MANIFEST,
                "application/vnd.ms-appx.bundlemanifest+xml",
            ),
            ("AppxBlockMap.xml", "application/vnd.ms-appx.blockmap+xml"),
        ],
    );
    let mut entries: Vec<(&str, &[u8], SimpleFileOptions)> =
        mapped.iter().map(|(n, b)| (*n, *b, stored())).collect();
    if let Some(last) = entries.last_mut() {
        last.2 = deflated();
    }
    entries.push(("AppxBlockMap.xml", block_map.as_bytes(), deflated()));
    entries.push(("[Content_Types].xml", types.as_bytes(), deflated()));
    let path = dir.join(file_name);
    write_zip(&path, &entries);
    check_offsets(&path, &listed);
    keep_seed("package", &path);
    path
}

/// Makes an unsigned flat bundle `dir/file_name`: only
/// `AppxMetadata/AppxBundleManifest.xml` (listing the payload packages by file name,
/// without an offset), `AppxBlockMap.xml` and `[Content_Types].xml`; the payload packages
/// (path, architecture) stay files of their own, and must be in `dir`, beside it.
pub fn build_flat_bundle(
    dir: &Path,
    file_name: &str,
    payloads: &[(&Path, &str)],
    name: &str,
    publisher: &str,
    version: &str,
) -> PathBuf {
    let mut xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="{BUNDLE_NS}" SchemaVersion="5.0">
  <Identity Name="{}" Publisher="{}" Version="{}" />
  <Packages>
"#,
        xml_escape(name),
        xml_escape(publisher),
        xml_escape(version)
    );
    for (path, arch) in payloads {
        assert_eq!(
            path.parent(),
            Some(dir),
            "a flat bundle's payloads are beside it"
        );
        let _ = writeln!(
            xml,
            r#"    <Package Type="application" Version="{}" Architecture="{}" FileName="{}" Size="{}">
      <Resources>
        <Resource Language="en-us" />
      </Resources>
    </Package>"#,
            xml_escape(version),
            xml_escape(arch),
            xml_escape(&path.file_name().unwrap().to_string_lossy()),
            fs::metadata(path).unwrap().len()
        );
    }
    xml.push_str("  </Packages>\n</Bundle>\n");
    const BUNDLE_MANIFEST: &str = "AppxMetadata/AppxBundleManifest.xml";
    let block_map = block_map(&[(BUNDLE_MANIFEST, xml.as_bytes())]);
    let types = content_types(
        &[],
        &[
            (
                BUNDLE_MANIFEST,
                "application/vnd.ms-appx.bundlemanifest+xml",
            ),
            ("AppxBlockMap.xml", "application/vnd.ms-appx.blockmap+xml"),
        ],
    );
    let path = dir.join(file_name);
    write_zip(
        &path,
        &[
            (BUNDLE_MANIFEST, xml.as_bytes(), deflated()),
            ("AppxBlockMap.xml", block_map.as_bytes(), deflated()),
            ("[Content_Types].xml", types.as_bytes(), deflated()),
        ],
    );
    keep_seed("package", &path);
    path
}

/// Checks that each payload's data is where the bundle manifest says.
fn check_offsets(bundle: &Path, listed: &[(String, String, u64, u64)]) {
    let mut zip = ZipArchive::new(File::open(bundle).unwrap()).unwrap();
    for (name, _, offset, size) in listed {
        let entry = zip.by_name(&opc_entry_name(name)).unwrap();
        assert_eq!(
            (entry.data_start(), entry.size()),
            (Some(*offset), *size),
            "payload {name} in {}",
            bundle.display()
        );
    }
}

// ---- signing -------------------------------------------------------------------------

/// Signs `package` with `cert` (`osslsigncode sign -h sha256`), timestamped by
/// osslsigncode's built-in TSA at a time when `tsa` is given; the signed package is
/// `signed/<file name>` next to it. Fails the test with osslsigncode's output when it
/// fails, or when the result has no `AppxSignature.p7x`.
pub fn sign(package: &Path, cert: &Cert, tsa: Option<(&Cert, jiff::Timestamp)>) -> PathBuf {
    try_sign(package, cert, tsa).unwrap_or_else(|e| panic!("{e}"))
}

/// [`sign`], with osslsigncode's command and output as the error when it fails.
pub fn try_sign(
    package: &Path,
    cert: &Cert,
    tsa: Option<(&Cert, jiff::Timestamp)>,
) -> Result<PathBuf, String> {
    let out_dir = package.parent().unwrap().join("signed");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(package.file_name().unwrap());
    let _ = fs::remove_file(&out);
    let mut command = command("osslsigncode");
    command
        .arg("sign")
        .arg("-certs")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .args(["-h", "sha256"]);
    if let Some((tsa, time)) = tsa {
        command
            .arg("-TSA-certs")
            .arg(&tsa.cert)
            .arg("-TSA-key")
            .arg(&tsa.key)
            .arg("-TSA-time")
            .arg(time.as_second().to_string());
    }
    command.arg("-in").arg(package).arg("-out").arg(&out);
    let shown = format!("{command:?}");
    let result = command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !result.status.success() {
        return Err(format!(
            "{shown} failed ({}):\n{}{}",
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    let Some(p7x) = zip_entry(&out, SIGNATURE_ENTRY) else {
        return Err(format!("{shown} wrote no {SIGNATURE_ENTRY}"));
    };
    keep_seed("package", &out);
    keep_seed_bytes("signature", &p7x);
    Ok(out)
}

/// With `APPATTACH_FUZZ_SEEDS=DIR`, test data is also copied to `DIR/<target>/` as a seed
/// corpus for the fuzz target of that name (`package`, `signature`, `image`): see
/// `fuzz/README.md`. Without it, nothing happens.
pub fn keep_seed(target: &str, file: &Path) {
    if std::env::var_os("APPATTACH_FUZZ_SEEDS").is_some() {
        keep_seed_bytes(target, &fs::read(file).unwrap());
    }
}

/// [`keep_seed`] for bytes.
pub fn keep_seed_bytes(target: &str, bytes: &[u8]) {
    let Some(root) = std::env::var_os("APPATTACH_FUZZ_SEEDS") else {
        return;
    };
    let dir = Path::new(&root).join(target);
    fs::create_dir_all(&dir).unwrap();
    let name = format!("{:x}", Sha256::digest(bytes));
    fs::write(dir.join(&name[..16]), bytes).unwrap();
}

/// `osslsigncode verify` of a signed package against `ca` (and `tsa_ca` for the
/// timestamp); its output, or the error with the output.
pub fn verify(signed: &Path, ca: &Cert, tsa_ca: Option<&Cert>) -> Result<String, String> {
    let mut command = command("osslsigncode");
    command.arg("verify").arg("-CAfile").arg(&ca.cert);
    if let Some(tsa) = tsa_ca {
        command.arg("-TSA-CAfile").arg(&tsa.cert);
    }
    command.arg("-in").arg(signed);
    let out = command.output().map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The bytes of `AppxSignature.p7x` in a signed package.
pub fn extract_signature(signed_package: &Path) -> Vec<u8> {
    zip_entry(signed_package, SIGNATURE_ENTRY)
        .unwrap_or_else(|| panic!("{} has no {SIGNATURE_ENTRY}", signed_package.display()))
}

/// The bytes of one zip entry, if the archive has it.
pub fn zip_entry(archive: &Path, name: &str) -> Option<Vec<u8>> {
    let mut zip = ZipArchive::new(File::open(archive).ok()?).ok()?;
    let mut entry = zip.by_name(name).ok()?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).unwrap();
    Some(bytes)
}

/// The entry names of a zip archive, in order.
pub fn zip_names(archive: &Path) -> Vec<String> {
    let zip = ZipArchive::new(File::open(archive).unwrap()).unwrap();
    zip.file_names().map(|n| n.unwrap().into_owned()).collect()
}

/// Standard base64 with padding, as block maps write hashes.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A folder, its certificates, and `notes.msix` signed by the code-signing certificate:
/// its manifest, `Notes.exe` of `exe_bytes` (over several 64 KiB blocks when large, not
/// all alike), `Assets/Logo.png`, and (when `catalog`) a code-integrity catalog.
pub fn signed_notes(catalog: bool, exe_bytes: u32) -> (tempfile::TempDir, Certs, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::make(tmp.path());
    let xml = manifest(
        "Contoso.Notes",
        &certs.code_signing.subject,
        "1.2.3.0",
        Some("x64"),
        &[("Notes", "Contoso Notes")],
        &[],
    );
    let exe: Vec<u8> = (0..exe_bytes).map(|i| (i % 251) as u8).collect();
    let unsigned = build_package_with_catalog(
        tmp.path(),
        "notes.msix",
        &xml,
        &[("Notes.exe", &exe), ("Assets/Logo.png", b"png")],
        catalog.then_some(b"a catalog\x00\x01".as_slice()),
    );
    let signed = sign(&unsigned, &certs.code_signing, None);
    (tmp, certs, signed)
}
