//! Manifests as a GitOps repository holds them: files of multi-document YAML (or JSON),
//! folders of them, or a stream on standard input (`kustomize build | appattach validate
//! -f -`). Every document remembers its file and the line of each of its fields, so a
//! problem can be reported as `file:line:`. A document that does not parse is reported
//! and the others are still read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser};
use serde_json::Value;

/// What a source is called in messages when it is standard input.
pub const STDIN: &str = "<stdin>";

/// The most a manifest source may hold; a GitOps repository's manifests are far smaller.
const MAX_BYTES: u64 = 64 << 20;

/// One YAML document of a source.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file, as given or found (`<stdin>` for standard input).
    pub file: String,
    /// The line the document starts on (1-based).
    pub line: usize,
    /// The document as JSON; `None` when it is empty.
    pub value: Option<Value>,
    /// The line of each field, by the path the API server prints (`spec.hostPools[0].ring`).
    lines: BTreeMap<String, usize>,
}

impl Document {
    /// The line of `field` (`spec.image.path`), or of the nearest field above it that the
    /// document has (a missing field is reported where its parent is).
    pub fn line_of(&self, field: &str) -> usize {
        let mut path = field.trim_start_matches('.');
        loop {
            if let Some(l) = self.lines.get(path) {
                return *l;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.line,
            }
        }
    }

    /// `Kind/name`, as far as the document says.
    pub fn object(&self) -> String {
        let v = self.value.as_ref();
        let kind = v.and_then(|v| v["kind"].as_str()).unwrap_or("<no kind>");
        let name = v
            .and_then(|v| v["metadata"]["name"].as_str())
            .unwrap_or("<no name>");
        format!("{kind}/{name}")
    }
}

/// A source that could not be read, or a document that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The file.
    pub file: String,
    /// The line (1-based; 0 when the file itself could not be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads every source: a file, a folder (recursively: its `.yaml`, `.yml` and `.json`
/// files, in name order, skipping hidden entries), or `-` for standard input.
pub fn read_sources(sources: &[String]) -> (Vec<Document>, Vec<ReadError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            match std::io::stdin()
                .take(MAX_BYTES + 1)
                .read_to_string(&mut text)
            {
                Ok(n) if n as u64 > MAX_BYTES => errors.push(too_large(STDIN)),
                Ok(_) => parse_into(STDIN, &text, &mut docs, &mut errors),
                Err(e) => errors.push(unreadable(STDIN, &e)),
            }
            continue;
        }
        let path = Path::new(source);
        let files = if path.is_dir() {
            let mut found = Vec::new();
            if let Err(e) = walk(path, &mut found) {
                errors.push(unreadable(source, &e));
            }
            found
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let name = file.display().to_string();
            match std::fs::metadata(&file) {
                Ok(m) if m.len() > MAX_BYTES => errors.push(too_large(&name)),
                Ok(_) => match std::fs::read(&file) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => parse_into(&name, &text, &mut docs, &mut errors),
                        Err(_) => errors.push(ReadError {
                            file: name,
                            line: 0,
                            message: "not UTF-8 text: manifests are YAML or JSON".into(),
                        }),
                    },
                    Err(e) => errors.push(unreadable(&name, &e)),
                },
                Err(e) => errors.push(unreadable(&name, &e)),
            }
        }
    }
    (docs, errors)
}

fn too_large(file: &str) -> ReadError {
    ReadError {
        file: file.into(),
        line: 0,
        message: format!("larger than {} MiB: not a manifest", MAX_BYTES >> 20),
    }
}

fn unreadable(file: &str, e: &std::io::Error) -> ReadError {
    ReadError {
        file: file.into(),
        line: 0,
        message: format!("cannot read it: {e}"),
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["yaml", "yml", "json"].contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Parses the documents of one source's text.
pub fn parse(file: &str, text: &str) -> (Vec<Document>, Vec<ReadError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    parse_into(file, text, &mut docs, &mut errors);
    (docs, errors)
}

fn parse_into(file: &str, text: &str, docs: &mut Vec<Document>, errors: &mut Vec<ReadError>) {
    for (offset, chunk) in split_documents(text) {
        if chunk.trim().is_empty() {
            continue;
        }
        // The first line with content: comments before a document are not the document.
        let first_line = offset
            + 1
            + chunk
                .lines()
                .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
                .count();
        let value: Value = match serde_yaml_ng::from_str::<Value>(&chunk) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map_or(first_line, |l| offset + l.line());
                let message = e.to_string();
                // serde_yaml_ng appends "at line L column C" relative to the chunk: the
                // line is given in front instead, counted in the whole file.
                let message = match message.find(" at line ") {
                    Some(i) => message[..i].to_string(),
                    None => message,
                };
                errors.push(ReadError {
                    file: file.into(),
                    line,
                    message: format!("not valid YAML: {message}"),
                });
                continue;
            }
        };
        if value.is_null() {
            continue; // only comments
        }
        let lines = field_lines(&chunk, offset);
        let start = lines.get("").copied().unwrap_or(first_line);
        // `kind: List` (what `kubectl get -o yaml` prints) holds its objects in `items`.
        if value["kind"] == "List"
            && value["apiVersion"] == "v1"
            && let Some(items) = value["items"].as_array()
        {
            for (i, item) in items.iter().enumerate() {
                let prefix = format!("items[{i}]");
                let sub = lines
                    .iter()
                    .filter_map(|(k, l)| {
                        let rest = k.strip_prefix(&prefix)?;
                        let rest = rest.strip_prefix('.').unwrap_or(rest);
                        (rest.is_empty() || !rest.starts_with('[')).then(|| (rest.to_string(), *l))
                    })
                    .collect::<BTreeMap<_, _>>();
                docs.push(Document {
                    file: file.into(),
                    line: sub.get("").copied().unwrap_or(start),
                    value: Some(item.clone()),
                    lines: sub,
                });
            }
            continue;
        }
        docs.push(Document {
            file: file.into(),
            line: start,
            value: Some(value),
            lines,
        });
    }
}

/// Splits a YAML stream into its documents at `---` (and after `...`): each document's
/// text, and the number of file lines before it (its parsers count lines from 1).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "..." || bare.starts_with("... ");
        if is_start || is_end {
            if !current.trim().is_empty() {
                out.push((offset, std::mem::take(&mut current)));
            }
            current.clear();
            offset = i;
            // `--- {a: 1}` keeps its content after the marker, on the marker's line.
            if is_start && bare.len() > 3 {
                current.push_str("   ");
                current.push_str(&bare[3..]);
            }
            current.push('\n');
            continue;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        out.push((offset, current));
    }
    out
}

/// The line of every field of one document, by path (`spec.hostPools[0]`). The root's
/// line is under the empty path.
fn field_lines(text: &str, offset: usize) -> BTreeMap<String, usize> {
    enum Frame {
        Map { path: String, key: Option<String> },
        Seq { path: String, next: usize },
    }
    fn child(parent: &str, key: &str) -> String {
        if parent.is_empty() {
            key.to_string()
        } else {
            format!("{parent}.{key}")
        }
    }
    let mut lines = BTreeMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let line = offset + span.start.line();
        // The path of a node that starts here, if it is a value (not a key).
        let node_path = |stack: &mut Vec<Frame>, scalar: Option<&str>| -> Option<String> {
            match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => Some(child(path, &k)),
                    None => {
                        *key = Some(scalar.unwrap_or_default().to_string());
                        None
                    }
                },
                Some(Frame::Seq { path, next }) => {
                    *next += 1;
                    Some(format!("{path}[{}]", *next - 1))
                }
            }
        };
        match event {
            Event::Scalar(value, ..) => {
                let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                let path = node_path(&mut stack, Some(&value));
                if is_key {
                    if let Some(Frame::Map { path: parent, .. }) = stack.last() {
                        lines.entry(child(parent, &value)).or_insert(line);
                    }
                } else if let Some(p) = path {
                    lines.entry(p).or_insert(line);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = node_path(&mut stack, None) {
                    lines.entry(p).or_insert(line);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                // A collection used as a key has no path of ours: give it one nobody asks for.
                let path = node_path(&mut stack, None).unwrap_or_else(|| "\u{0}".into());
                lines.entry(path.clone()).or_insert(line);
                stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "# a comment\napiVersion: appattach.io/v1alpha1\nkind: AppAttachPackage\nmetadata:\n  name: a\nspec:\n  hostPools:\n    - name: hp-a\n      ring: 0\n    - name: hp-b\n---\n---\n# only a comment\n---\nkind: UserAssignment\nmetadata: {name: b}\nspec:\n  principals: [{kind: User,\n    name: x}]\n";

    #[test]
    fn documents_know_their_lines_and_their_fields_lines() {
        let (docs, errors) = parse("f.yaml", STREAM);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line, 2);
        assert_eq!(docs[0].line_of("metadata.name"), 5);
        assert_eq!(docs[0].line_of("spec.hostPools[0].ring"), 9);
        assert_eq!(docs[0].line_of("spec.hostPools[1].name"), 10);
        // A missing field is reported where its nearest parent is.
        assert_eq!(docs[0].line_of("spec.hostPools[1].ring"), 10);
        assert_eq!(docs[0].line_of("spec.location"), 6);
        assert_eq!(docs[1].line, 15);
        assert_eq!(docs[1].line_of("spec.principals[0].name"), 19);
        assert_eq!(docs[1].object(), "UserAssignment/b");
    }

    #[test]
    fn a_document_that_does_not_parse_is_reported_and_the_rest_are_read() {
        let text = "kind: A\nmetadata: {name: a}\n---\nkind: B\n  bad: [indent\n---\nkind: C\n";
        let (docs, errors) = parse("f.yaml", text);
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 5, "{errors:?}");
        assert!(errors[0].message.starts_with("not valid YAML"));
        assert_eq!(docs[1].line, 7);
    }

    #[test]
    fn a_list_holds_its_items_as_documents() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n  metadata:\n    name: a\n- kind: B\n  metadata:\n    name: b\n";
        let (docs, _) = parse("f.yaml", text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].object(), "B/b");
        assert_eq!(docs[1].line, 7);
        assert_eq!(docs[1].line_of("metadata.name"), 9);
    }

    #[test]
    fn content_on_the_marker_line_is_kept() {
        let (docs, _) = parse("f.yaml", "--- {kind: A, metadata: {name: a}}\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].object(), "A/a");
        assert_eq!(docs[0].line, 1);
    }
}
