//! `AppxBlockMap.xml`: every file of the package, its size, and the digest of each of its
//! 64 KiB blocks. Windows checks each block it reads against it (`APPX_E_BLOCK_HASH_INVALID`),
//! and the signature covers the block map itself (`AXBM`).

use std::io::Read;

use base64::Engine as _;
use roxmltree::{Document, ParsingOptions};

use super::{Code, DigestAlgorithm, Problem};

/// The block size of app packages' block maps.
pub const BLOCK_SIZE: u64 = 64 << 10;

/// The name the block map goes by in the package.
pub const NAME: &str = "AppxBlockMap.xml";

/// Bounds on a block map read: its bytes and XML nodes (two per block, about), and the
/// blocks in all.
pub mod limits {
    /// Most bytes of a block map read: about 800,000 blocks, 50 GiB of files.
    pub const BYTES: u64 = 64 << 20;
    /// Most XML nodes in it.
    pub const NODES: u32 = 4_000_000;
}

/// A parsed block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    /// Its `HashMethod`.
    pub hash: DigestAlgorithm,
    /// Its files, in order.
    pub files: Vec<BlockMapFile>,
}

/// One `<File>` of a block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMapFile {
    /// `Name`, as the block map writes it (`Assets\Logo.png`).
    pub name: String,
    /// `Size`: the file's uncompressed size.
    pub size: u64,
    /// `LfhSize`: the size of the file's ZIP local header.
    pub lfh_size: Option<u64>,
    /// Each block's digest, in order.
    pub blocks: Vec<Vec<u8>>,
}

impl BlockMapFile {
    /// How the name compares with a ZIP part name: `/` between folders, ASCII case ignored.
    pub fn key(&self) -> String {
        key(&self.name)
    }
}

/// How file names compare: `/` between folders, ASCII case ignored (as the package
/// reader compares part names).
pub fn key(name: &str) -> String {
    crate::inspect::package::part_key(name)
}

fn invalid(at: impl std::fmt::Display, what: impl std::fmt::Display) -> Problem {
    Problem::new(Code::InvalidBlockMap, format!("{NAME} {at}"), what)
}

/// Parses a block map. Each file's block count must fit its size; a digest must be
/// base64 of the `HashMethod`'s length.
pub fn parse(bytes: &[u8]) -> Result<BlockMap, Problem> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| invalid(format!("byte {}", e.valid_up_to()), "is not UTF-8 text"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits::NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| {
        let pos = e.pos();
        invalid(
            format!("line {} column {}", pos.row, pos.col),
            format!("is not valid XML ({e}); a DTD or entity declaration is refused"),
        )
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "BlockMap" {
        return Err(invalid(
            "root",
            format!("is <{}>, not <BlockMap>", root.tag_name().name()),
        ));
    }
    let method = root
        .attribute("HashMethod")
        .ok_or_else(|| invalid("<BlockMap>", "has no HashMethod"))?;
    let hash = DigestAlgorithm::from_uri(method).ok_or_else(|| {
        invalid(
            "<BlockMap>",
            format!("HashMethod {method:?} is not SHA-256, SHA-384 or SHA-512"),
        )
    })?;
    let mut files = Vec::new();
    for node in root
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "File")
    {
        let at = format!("line {}", doc.text_pos_at(node.range().start).row);
        let name = node
            .attribute("Name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid(&at, "<File> has no Name"))?;
        let at = format!("{at} (File {name:?})");
        let number = |attribute: &str| -> Result<Option<u64>, Problem> {
            node.attribute(attribute)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        invalid(&at, format!("{attribute} {v:?} is not a whole number"))
                    })
                })
                .transpose()
        };
        let size = number("Size")?.ok_or_else(|| invalid(&at, "<File> has no Size"))?;
        let lfh_size = number("LfhSize")?;
        let mut blocks = Vec::new();
        for block in node
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() == "Block")
        {
            let encoded = block
                .attribute("Hash")
                .ok_or_else(|| invalid(&at, "a <Block> has no Hash"))?;
            let digest = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .filter(|d| d.len() == hash.output_len())
                .ok_or_else(|| {
                    invalid(
                        &at,
                        format!(
                            "block {} Hash {encoded:?} is not base64 of a {hash} digest",
                            blocks.len()
                        ),
                    )
                })?;
            blocks.push(digest);
        }
        let expected = size.div_ceil(BLOCK_SIZE);
        if blocks.len() as u64 != expected {
            return Err(invalid(
                &at,
                format!(
                    "{} <Block> elements for {size} bytes, which make {expected} blocks of 64 KiB",
                    blocks.len()
                ),
            ));
        }
        files.push(BlockMapFile {
            name: name.to_string(),
            size,
            lfh_size,
            blocks,
        });
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = files.iter().find(|f| !seen.insert(f.key())) {
        return Err(invalid(format!("File {:?}", twice.name), "is listed twice"));
    }
    Ok(BlockMap { hash, files })
}

/// What checking one file's data against its block map entry found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Checked {
    /// Blocks hashed.
    pub blocks: u64,
}

/// Streams `data` (a file's uncompressed bytes) through the block map's digest, 64 KiB
/// at a time, and compares each block and the size; `shown` names the file in problems.
/// An error reading `data` (a failed CRC, a truncated stream) is a problem too.
pub fn check_file(
    file: &BlockMapFile,
    hash: DigestAlgorithm,
    data: &mut dyn Read,
    shown: &str,
) -> Result<Checked, Problem> {
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut index = 0usize;
    let mut total = 0u64;
    loop {
        let n = fill(data, &mut buf).map_err(|e| {
            Problem::new(
                Code::CorruptContent,
                format!("{shown} at byte {total}"),
                format!("cannot be read: {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        let start = total;
        total += n as u64;
        if total > file.size {
            return Err(Problem::new(
                Code::BlockHashInvalid,
                shown,
                format!(
                    "has more than the {} bytes the block map gives it",
                    file.size
                ),
            ));
        }
        let actual = hash.digest(&buf[..n]);
        let expected = &file.blocks[index];
        if &actual != expected {
            return Err(Problem::new(
                Code::BlockHashInvalid,
                format!("{shown} block {index} (bytes {start}..{total})"),
                format!(
                    "its {hash} is {}, the block map says {}: the file changed after the block \
                     map was made",
                    super::hex(&actual),
                    super::hex(expected)
                ),
            ));
        }
        index += 1;
    }
    if total != file.size {
        return Err(Problem::new(
            Code::BlockHashInvalid,
            shown,
            format!("has {total} bytes, the block map gives it {}", file.size),
        ));
    }
    Ok(Checked {
        blocks: index as u64,
    })
}

/// Reads until `buf` is full or the data ends; the bytes read.
fn fill(data: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match data.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(hash: &str, files: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><BlockMap xmlns="http://schemas.microsoft.com/appx/2010/blockmap" HashMethod="{hash}">{files}</BlockMap>"#
        )
    }
    const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

    fn b64(d: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(d)
    }

    #[test]
    fn a_file_of_two_blocks_checks_and_a_changed_byte_names_its_block() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let h = DigestAlgorithm::Sha256;
        let xml = map(
            SHA256,
            &format!(
                r#"<File Name="bin\a.exe" Size="70000" LfhSize="39"><Block Hash="{}"/><Block Hash="{}"/></File>"#,
                b64(&h.digest(&data[..65536])),
                b64(&h.digest(&data[65536..]))
            ),
        );
        let parsed = parse(xml.as_bytes()).unwrap();
        assert_eq!(parsed.files[0].key(), "bin/a.exe");
        assert_eq!(parsed.files[0].lfh_size, Some(39));
        let ok = check_file(&parsed.files[0], h, &mut data.as_slice(), "bin/a.exe").unwrap();
        assert_eq!(ok.blocks, 2);
        let mut changed = data.clone();
        changed[65_540] ^= 1;
        let p = check_file(&parsed.files[0], h, &mut changed.as_slice(), "bin/a.exe").unwrap_err();
        assert_eq!(p.code, Code::BlockHashInvalid);
        assert_eq!(p.at, "bin/a.exe block 1 (bytes 65536..70000)");
        let short = check_file(&parsed.files[0], h, &mut &data[..65536], "x").unwrap_err();
        assert!(short.what.contains("has 65536 bytes"), "{short}");
        let mut long = data.clone();
        long.extend([0u8; 70_000]);
        let long = check_file(&parsed.files[0], h, &mut long.as_slice(), "x").unwrap_err();
        assert!(long.what.contains("more than the 70000"), "{long}");
    }

    #[test]
    fn malformed_block_maps_are_refused_naming_the_place() {
        let cases = [
            (map("md5", ""), "HashMethod"),
            (
                map(SHA256, r#"<File Name="a" Size="1"></File>"#),
                "0 <Block> elements for 1 bytes",
            ),
            (
                map(
                    SHA256,
                    r#"<File Name="a" Size="x"><Block Hash="AA=="/></File>"#,
                ),
                "Size \"x\"",
            ),
            (
                map(
                    SHA256,
                    r#"<File Name="a" Size="1"><Block Hash="AA=="/></File>"#,
                ),
                "not base64 of a SHA-256",
            ),
            (
                map(
                    SHA256,
                    r#"<File Name="a\b" Size="0"/><File Name="A/B" Size="0"/>"#,
                ),
                "listed twice",
            ),
            ("<Other/>".to_string(), "not <BlockMap>"),
            ("<BlockMap".to_string(), "not valid XML"),
        ];
        for (xml, says) in cases {
            let p = parse(xml.as_bytes()).unwrap_err();
            assert_eq!(p.code, Code::InvalidBlockMap, "{xml}");
            assert!(p.to_string().contains(says), "{xml}: {p}");
        }
    }
}
