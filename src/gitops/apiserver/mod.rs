//! What the API server would decide about a manifest, decided offline.
//!
//! `kubectl apply --server-side`, Flux and our tests send manifests as server-side apply
//! patches. The API server (kubernetes 1.36) then decides in this order, and stops at the
//! first step that refuses:
//!
//! 1. server-side apply types the patch against the CRD schema: an undeclared field, a
//!    value of the wrong kind or a duplicate key in a `map` list fails the whole request
//!    with one message (`failed to create typed patch object ...`), see [`apply`];
//! 2. the schema's defaults are applied, see [`schema`];
//! 3. the strategy validates `metadata` (the name, labels, annotations), the schema
//!    (kube-openapi) and, unless one of those errors blocks them, the CEL rules (see
//!    [`cel`]); on an update it ratchets away errors in values that did not change.
//!
//! Each refusal is worded as the API server words it, so that `appattach validate` says
//! what `kubectl apply` would say; the integration tests compare the two on every bad
//! manifest they apply.

mod apply;
mod cel;
mod schema;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use serde_json::Value;

use crate::resources::{self, VERSION};
use schema::Schema;

/// One refusal, worded as the API server words one cause (k8s.io/apimachinery field.Error).
///
/// Server-side apply's own refusals (step 1 above) are not field errors: their `field` is
/// the path as server-side apply prints it, which starts with a dot (`.spec.foo`), and
/// [`message`] words them as the one error they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field path as the API server prints it, e.g. `spec.hostPools[0].ring`, `metadata.name`; may be empty.
    pub field: String,
    /// The rest, e.g. `Invalid value: "string": spec.image.path must be a UNC path ...` or `Required value`.
    pub detail: String,
}

impl fmt::Display for Refusal {
    /// Exactly the API server's text of this one cause, e.g. `spec.location: Required value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.detail)
        } else {
            write!(f, "{}: {}", self.field, self.detail)
        }
    }
}

impl Refusal {
    /// Whether server-side apply itself refused (step 1), rather than the validation.
    fn is_typed_patch_error(&self) -> bool {
        self.field.is_empty() || self.field.starts_with('.')
    }
}

/// What the API server would refuse in `object` (a JSON manifest of one of the three kinds of
/// appattach.io/v1alpha1, as read from YAML) when applied server-side; `old` is the object as
/// it stands in the cluster (for transition rules using `oldSelf` and immutability), None on create.
/// Empty when the API server would accept it.
///
/// The applied object is taken to be the whole object, as when one field manager owns every
/// field (a GitOps tool applying its manifests).
pub fn check(object: &Value, old: Option<&Value>) -> Vec<Refusal> {
    let Some(kind) = object
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|k| KINDS.iter().find(|crd| crd.kind == k))
    else {
        let got = object.get("kind").unwrap_or(&Value::Null);
        let supported: Vec<&str> = KINDS.iter().map(|crd| crd.kind.as_str()).collect();
        return vec![Cause::not_supported(Some("kind"), got, &supported).into()];
    };

    // 1. Server-side apply types the patch before anything else.
    let typed = apply::typed_errors(&kind.schema, object);
    if !typed.is_empty() {
        return typed;
    }

    // 2. What the API server validates: defaults applied, status kept apart
    // (the status subresource owns it: dropped on create, the old one kept on update).
    let new = stored(&kind.schema, object);
    let old = old.map(|o| stored(&kind.schema, o));

    // 3. The strategy's validation.
    let mut causes = metadata(&new, old.is_none());
    schema::validate(&kind.schema, &new, None, old.as_ref(), &mut causes);
    if causes.iter().any(|c| c.blocks_rules()) {
        causes.push(Cause::rules_not_checked());
    } else {
        cel::validate(&kind.schema, &new, old.as_ref(), &mut causes);
    }
    causes.into_iter().map(Refusal::from).collect()
}

/// The whole message of the API server's refusal (the `message` of its Status), e.g.
/// `AppAttachPackage.appattach.io "p" is invalid: spec.location: Required value`, for these refusals.
///
/// Empty when there are no refusals.
pub fn message(object: &Value, refusals: &[Refusal]) -> String {
    let Some(first) = refusals.first() else {
        return String::new();
    };
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let (api_version, kind) = (text("/apiVersion"), text("/kind"));
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let name = text("/metadata/name");
    if first.is_typed_patch_error() {
        // k8s.io/apimachinery managedfields: `typeConverter.ObjectToTyped` failed; several
        // errors are listed one per line (structured-merge-diff ValidationErrors).
        let errors = if refusals.len() == 1 {
            first.to_string()
        } else {
            let lines: Vec<String> = refusals.iter().map(|r| format!("  {r}")).collect();
            format!("errors:\n{}", lines.join("\n"))
        };
        let namespace = text("/metadata/namespace");
        return format!(
            "failed to create typed patch object ({namespace}/{name}; {group}/{version}, Kind={kind}): {errors}"
        );
    }
    // apimachinery errors.NewInvalid: the causes aggregated, each distinct text once.
    let mut seen = BTreeSet::new();
    let distinct: Vec<String> = refusals
        .iter()
        .map(Refusal::to_string)
        .filter(|text| seen.insert(text.clone()))
        .collect();
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let causes = if distinct.len() == 1 {
        distinct.concat()
    } else {
        format!("[{}]", distinct.join(", "))
    };
    format!("{qualified} {} is invalid: {causes}", go_quote(name))
}

/// One kind's CRD, ready to check against: its schema with the CEL rules compiled.
struct Kind {
    kind: String,
    schema: Schema,
}

/// The three kinds, built once from the Rust types (the same CRDs as `crds/`).
static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    resources::crds()
        .into_iter()
        .filter_map(|crd| {
            let json = serde_json::to_value(&crd).ok()?;
            let version = json
                .pointer("/spec/versions")?
                .as_array()?
                .iter()
                .find(|v| v["name"] == VERSION)?;
            Some(Kind {
                kind: json.pointer("/spec/names/kind")?.as_str()?.to_string(),
                schema: Schema::from_crd(version.pointer("/schema/openAPIV3Schema")?),
            })
        })
        .collect()
});

/// The object as the API server validates it: defaulted as server-side apply defaults it
/// (which, unlike decoding, leaves nulls without a default in place), and without status,
/// which the main resource never changes.
fn stored(schema: &Schema, object: &Value) -> Value {
    let mut object = object.clone();
    schema::apply_defaults(schema, &mut object);
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

/// `metadata` as the strategy checks it (apimachinery `ValidateObjectMetaAccessor`): on
/// create the name, a DNS-1123 subdomain; always the labels and the annotations.
fn metadata(object: &Value, create: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if create && name.is_empty() {
        causes.push(Cause::required(
            Some("metadata.name"),
            "name or generateName is required",
        ));
    } else if create {
        for problem in dns_subdomain(name, "characters") {
            causes.push(Cause::invalid(
                Some("metadata.name"),
                Bad::Value(&Value::from(name)),
                &problem,
            ));
        }
    }
    let field = |key: &str| {
        object
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_object)
    };
    let text = |s: &str| Value::from(s);
    for (key, value) in field("labels").into_iter().flatten() {
        for problem in label_key(key) {
            causes.push(Cause::invalid(
                Some("metadata.labels"),
                Bad::Value(&text(key)),
                &problem,
            ));
        }
        let value = value.as_str().unwrap_or("");
        for problem in label_value(value) {
            causes.push(Cause::invalid(
                Some("metadata.labels"),
                Bad::Value(&text(value)),
                &problem,
            ));
        }
    }
    let annotations = field("annotations");
    let mut size = 0;
    for (key, value) in annotations.into_iter().flatten() {
        // Annotation keys are label keys in any case.
        for problem in label_key(&key.to_lowercase()) {
            let annotations = Some("metadata.annotations");
            causes.push(Cause::invalid(
                annotations,
                Bad::Value(&text(key)),
                &problem,
            ));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > 256 << 10 {
        causes.push(Cause::too_long(Some("metadata.annotations"), 256 << 10));
    }
    causes
}

/// `RegexError`: what a value must look like, examples, and the regular expression,
/// punctuated as Go punctuates it (`(e.g. 'a',  or 'b', regex used ...)`).
fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{message} (e.g. {}regex used for validation is '{regex}')",
        examples.join(" or ")
    )
}

/// Why `value` is no DNS-1123 subdomain (`IsDNS1123Subdomain`); the length limit is worded
/// in `unit`, which differs between the name (characters) and label prefixes (bytes).
fn dns_subdomain(value: &str, unit: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 253 {
        problems.push(format!("must be no more than 253 {unit}"));
    }
    let label_ok = |label: &str| {
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let bytes = label.as_bytes();
        bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || *b == b'-')
    };
    if !value.split('.').all(label_ok) {
        problems.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
             characters, '-' or '.', and must start and end with an alphanumeric character",
            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            &["example.com"],
        ));
    }
    problems
}

const LABEL_KEY_REGEX: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
                                 must start and end with an alphanumeric character";

/// Whether `s` matches [`LABEL_KEY_REGEX`].
fn label_name_ok(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// Why `key` is no label key (`IsLabelKey`): an optional DNS subdomain and `/`, then a name.
fn label_key(key: &str) -> Vec<String> {
    let examples = ["MyName", "my.name", "123-abc"];
    let parts: Vec<&str> = key.split('/').collect();
    let mut problems = Vec::new();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                let in_prefix = dns_subdomain(prefix, "bytes");
                problems.extend(in_prefix.into_iter().map(|p| format!("prefix part {p}")));
            }
            name
        }
        _ => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(LABEL_KEY_MESSAGE, LABEL_KEY_REGEX, &examples)
            )];
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        problems.push("name part must be no more than 63 bytes".to_string());
    }
    if !label_name_ok(name) {
        let regex = regex_error(LABEL_KEY_MESSAGE, LABEL_KEY_REGEX, &examples);
        problems.push(format!("name part {regex}"));
    }
    problems
}

/// Why `value` is no label value (`IsLabelValue`): empty, or a label name of at most 63 bytes.
fn label_value(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push("must be no more than 63 bytes".to_string());
    }
    if !value.is_empty() && !label_name_ok(value) {
        problems.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character",
            &format!("({LABEL_KEY_REGEX})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    problems
}

/// The type of a field error (apimachinery `field.ErrorType`), as far as it matters here:
/// some types keep the API server from running the CEL rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorType {
    Required,
    NotSupported,
    TooLong,
    TooMany,
    TypeInvalid,
    Invalid,
    Forbidden,
    Duplicate,
}

/// A field error before it is a [`Refusal`]: the type decides whether CEL rules run.
#[derive(Debug, Clone, PartialEq)]
struct Cause {
    error_type: ErrorType,
    field: String,
    body: String,
}

impl From<Cause> for Refusal {
    fn from(cause: Cause) -> Self {
        Refusal {
            field: cause.field,
            detail: cause.body,
        }
    }
}

/// A value as a field error quotes it (`field.Error.BadValue`).
#[derive(Debug, Clone, Copy)]
enum Bad<'a> {
    /// A value from the manifest (or a count, a type name).
    Value(&'a Value),
    /// No value: objects and lists are not quoted in CEL rule errors.
    Omitted,
}

impl Cause {
    /// A field path as `field.Path.String()` prints it; a nil path prints `<nil>`.
    fn path(field: Option<&str>) -> String {
        field.unwrap_or("<nil>").to_string()
    }

    /// `field.Required`.
    fn required(field: Option<&str>, detail: &str) -> Self {
        Cause {
            error_type: ErrorType::Required,
            field: Self::path(field),
            body: with_detail("Required value", detail),
        }
    }

    /// `field.Forbidden`.
    fn forbidden(field: Option<&str>, detail: &str) -> Self {
        Cause {
            error_type: ErrorType::Forbidden,
            field: Self::path(field),
            body: with_detail("Forbidden", detail),
        }
    }

    /// `field.Invalid`.
    fn invalid(field: Option<&str>, value: Bad<'_>, detail: &str) -> Self {
        Cause {
            error_type: ErrorType::Invalid,
            field: Self::path(field),
            body: with_detail(&quoted("Invalid value", value), detail),
        }
    }

    /// `field.TypeInvalid`: worded as Invalid, but it blocks the CEL rules.
    fn type_invalid(field: Option<&str>, value: Bad<'_>, detail: &str) -> Self {
        Cause {
            error_type: ErrorType::TypeInvalid,
            ..Self::invalid(field, value, detail)
        }
    }

    /// `field.Duplicate`.
    fn duplicate(field: Option<&str>, value: Bad<'_>) -> Self {
        Cause {
            error_type: ErrorType::Duplicate,
            field: Self::path(field),
            body: quoted("Duplicate value", value),
        }
    }

    /// `field.NotSupported`: the value and the supported values.
    fn not_supported(field: Option<&str>, value: &Value, supported: &[&str]) -> Self {
        let quoted_values: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        let detail = if quoted_values.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted_values.join(", "))
        };
        Cause {
            error_type: ErrorType::NotSupported,
            field: Self::path(field),
            body: with_detail(&quoted("Unsupported value", Bad::Value(value)), &detail),
        }
    }

    /// `field.TooLong` as the schema validation reports maxLength (counted in characters,
    /// worded in bytes).
    fn too_long(field: Option<&str>, max: u64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Cause {
            error_type: ErrorType::TooLong,
            field: Self::path(field),
            body: format!("Too long: may not be more than {max} {unit}"),
        }
    }

    /// `field.TooMany`: a list over maxItems.
    fn too_many(field: Option<&str>, actual: usize, max: u64) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Cause {
            error_type: ErrorType::TooMany,
            field: Self::path(field),
            body: format!("Too many: {actual}: must have at most {max} {unit}"),
        }
    }

    /// The cause the API server adds when it skips the CEL rules (apiextensions-apiserver
    /// `hasBlockingErr`).
    fn rules_not_checked() -> Self {
        Self::invalid(
            None,
            Bad::Value(&Value::Null),
            "some validation rules were not checked because the object was invalid; \
             correct the existing errors to complete validation",
        )
    }

    /// Whether the API server skips the CEL rules because of this error.
    fn blocks_rules(&self) -> bool {
        matches!(
            self.error_type,
            ErrorType::NotSupported
                | ErrorType::Required
                | ErrorType::TooLong
                | ErrorType::TooMany
                | ErrorType::TypeInvalid
        )
    }
}

/// `Type` or `Type: detail`, as `field.Error.ErrorBody` joins them.
fn with_detail(head: &str, detail: &str) -> String {
    if detail.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {detail}")
    }
}

/// `Type: value` as `field.Error.ErrorBody` prints a bad value: strings quoted, numbers
/// and booleans plain, anything else as JSON.
fn quoted(head: &str, value: Bad<'_>) -> String {
    match value {
        Bad::Omitted => head.to_string(),
        Bad::Value(Value::String(s)) => format!("{head}: {}", go_quote(s)),
        Bad::Value(Value::Number(n)) => format!("{head}: {}", go_number(n)),
        Bad::Value(Value::Bool(b)) => format!("{head}: {b}"),
        Bad::Value(other) => format!("{head}: {}", go_json(other)),
    }
}

/// A string quoted as Go's `strconv.Quote` (`%q`) quotes it.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            // Go prints a rune as is when unicode.IsPrint holds: not a control or a space
            // other than ' ' (close enough to its table for what manifests hold).
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number as Go prints the int64 or float64 it decodes to (`%v`).
fn go_number(n: &serde_json::Number) -> String {
    match n.as_i64() {
        Some(i) => i.to_string(),
        None => go_float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// A float64 as Go's `%v` prints it: the shortest digits, in exponent form below 1e-4 and
/// from 1e21.
fn go_float(f: f64) -> String {
    let magnitude = f.abs();
    if f == 0.0 || !f.is_finite() || (1e-4..1e21).contains(&magnitude) {
        return format!("{f}");
    }
    // Rust prints `1.5e-5`; Go prints `1.5e-05` and `1e+21`.
    let text = format!("{f:e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

/// A value as Go's `json.Marshal` prints it (keys sorted, HTML characters escaped).
fn go_json(value: &Value) -> String {
    serde_json::to_string(value)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests;
