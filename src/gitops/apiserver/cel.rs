//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated with the `cel` crate as the
//! API server evaluates them with cel-go (apiextensions-apiserver `schema/cel`): at every
//! schema node whose value is not null, with `self` the value and property names escaped
//! as Kubernetes escapes them; transition rules (those using `oldSelf`) only where an old
//! value correlates; and, on an update, errors of a value equal to the old one ratcheted
//! away.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::common::value::Val;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program};
use serde_json::Value;

use super::schema::{Schema, correlated_item, unchanged};
use super::{Bad, Cause};

/// The environment of every rule: the standard library and the strings extension
/// (`lowerAscii`, `split`, ...), as the API server's CEL environment has them.
static ENV: LazyLock<Option<Arc<Env>>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings).ok()?;
    Some(Arc::new(env))
});

/// `s.matches(p)`: the schema's `pattern` keyword uses the same regular expressions as
/// CEL's `matches` (RE2 syntax, unanchored search), so both go through one engine.
static MATCHES: LazyLock<Option<Program>> =
    LazyLock::new(|| ENV.as_ref()?.compile("s.matches(p)").ok());

/// One `x-kubernetes-validations` rule, compiled.
#[derive(Debug)]
pub(super) struct Rule {
    /// The rule as written, for messages.
    source: String,
    /// The rule's `message`, trimmed; empty when it has none.
    message: String,
    /// The rule's `fieldPath`, as a field path relative to the node (`package.type`).
    field_path: Option<String>,
    /// The rule's `reason` (`FieldValueForbidden`, ...), which picks the error type.
    reason: Option<String>,
    /// The compiled program, or why it does not compile.
    program: Result<Program, String>,
    /// Whether the rule reads `oldSelf`, which makes it a transition rule.
    uses_old_self: bool,
}

impl Rule {
    /// Compiles one rule of `node` (its JSON as the CRD has it).
    pub(super) fn compile(json: &Value, node: &Schema) -> Rule {
        let text = |key: &str| json.get(key).and_then(Value::as_str).unwrap_or("");
        let source = text("rule").to_string();
        let program = match ENV.as_ref() {
            Some(env) => env.compile(&source).map_err(|e| e.to_string()),
            None => Err("the CEL environment did not build".to_string()),
        };
        let uses_old_self = program
            .as_ref()
            .is_ok_and(|p| p.references().has_variable("oldSelf"));
        Rule {
            message: text("message").trim().to_string(),
            field_path: normalized_field_path(text("fieldPath"), node),
            reason: json
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            program,
            uses_old_self,
            source,
        }
    }

    /// Whether the rule compiled.
    #[cfg(test)]
    pub(super) fn compiles(&self) -> bool {
        self.program.is_ok()
    }

    /// What errors name the rule by: its message, else the rule itself.
    fn error_string(&self) -> &str {
        if self.message.is_empty() {
            self.source.trim()
        } else {
            &self.message
        }
    }
}

/// A rule's `fieldPath` (`.image.path`, `['a.b']`) as the field path the API server appends
/// to the node's path; None when there is none or it does not name a field of `node`.
fn normalized_field_path(field_path: &str, node: &Schema) -> Option<String> {
    let mut rest = field_path.trim();
    let mut schema = node;
    let mut out = String::new();
    while !rest.is_empty() {
        let name = if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']")?;
            rest = &after[end + 2..];
            after[..end].to_string()
        } else {
            let after = rest.strip_prefix('.')?;
            let end = after.find(['.', '[']).unwrap_or(after.len());
            rest = &after[end..];
            after[..end].to_string()
        };
        if let Some(sub) = schema.properties.get(&name) {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&name);
            schema = sub;
        } else if let Some(sub) = schema.additional_properties.as_deref() {
            out.push_str(&format!("[{name}]"));
            schema = sub;
        } else {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `s` matches the regular expression `pattern`; Err with why it does not compile.
pub(super) fn regex_matches(pattern: &str, s: &str) -> Result<bool, String> {
    let (Some(env), Some(program)) = (ENV.as_ref(), MATCHES.as_ref()) else {
        return Err("the CEL environment did not build".to_string());
    };
    let mut context = Context::with_env(env.clone());
    add_variable(&mut context, "s", cel::Value::from(s))?;
    add_variable(&mut context, "p", cel::Value::from(pattern))?;
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("matches gave {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn add_variable(
    context: &mut Context<'_, '_>,
    name: &str,
    value: cel::Value,
) -> Result<(), String> {
    let value: Box<dyn Val> = value
        .try_into()
        .map_err(|e: ExecutionError| e.to_string())?;
    context.add_variable_as_val(name, value);
    Ok(())
}

/// Evaluates every rule of `schema` over `object`, appending the errors the API server
/// would; `old` is the stored object on an update.
pub(super) fn validate(schema: &Schema, object: &Value, old: Option<&Value>, out: &mut Vec<Cause>) {
    walk(schema, object, old, None, false, out);
}

/// One node: its rules, then its children. `ancestor_unchanged` is whether the nearest
/// ancestor that correlates with an old value equals it (for nodes that do not correlate).
fn walk(
    schema: &Schema,
    value: &Value,
    old: Option<&Value>,
    path: Option<&str>,
    ancestor_unchanged: bool,
    out: &mut Vec<Cause>,
) {
    if value.is_null() {
        // Rules only see non-null values; a null is the surrounding schema's business.
        return;
    }
    let ratchet = match old {
        Some(o) => unchanged(schema, value, o),
        None => ancestor_unchanged,
    };
    if !schema.rules.is_empty() {
        evaluate(schema, value, old, path, ratchet, out);
    }
    let child = |name: &str| match path {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let (sub, sub_path) = match schema.properties.get(k) {
                    Some(sub) => (sub, child(k)),
                    None => match schema.additional_properties.as_deref() {
                        Some(sub) => (sub, format!("{}[{k}]", path.unwrap_or(""))),
                        None => continue,
                    },
                };
                let old_v = old.and_then(|o| o.get(k));
                walk(sub, v, old_v, Some(&sub_path), ratchet, out);
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.items.as_deref() {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{}[{i}]", path.unwrap_or(""));
                    let old_item = correlated_item(schema, item, old);
                    walk(sub, item, old_item, Some(&item_path), ratchet, out);
                }
            }
        }
        _ => {}
    }
}

/// The rules of one node, in order.
fn evaluate(
    schema: &Schema,
    value: &Value,
    old: Option<&Value>,
    path: Option<&str>,
    ratchet: bool,
    out: &mut Vec<Cause>,
) {
    let type_name = Value::from(schema.type_name.as_deref().unwrap_or(""));
    let mut self_value = to_cel(schema, value);
    if path.is_none() {
        // The resource root also shows apiVersion, kind and the name fields of metadata.
        self_value = with_root_fields(self_value, value);
    }
    let old_value = old.map(|o| to_cel(schema, o));
    for rule in &schema.rules {
        if rule.uses_old_self && old_value.is_none() {
            // A transition rule needs an old value to compare with.
            continue;
        }
        let outcome = match &rule.program {
            Err(e) => {
                let msg = format!("rule compile error: {e}");
                out.push(Cause::invalid(path, Bad::Value(&type_name), &msg));
                continue;
            }
            Ok(program) => run(program, &self_value, old_value.as_ref()),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                let field = match (&rule.field_path, path) {
                    (Some(f), Some(p)) => Some(format!("{p}.{f}")),
                    (Some(f), None) => Some(f.clone()),
                    (None, p) => p.map(str::to_string),
                };
                let shown = match schema.type_name.as_deref() {
                    Some("object" | "array") => Bad::Omitted,
                    _ => Bad::Value(value),
                };
                let detail = if rule.message.is_empty() {
                    format!("failed rule: {}", rule.source.trim())
                } else {
                    rule.message.clone()
                };
                let field = field.as_deref();
                let cause = match rule.reason.as_deref() {
                    Some("FieldValueForbidden") => Cause::forbidden(field, &detail),
                    Some("FieldValueRequired") => Cause::required(field, &detail),
                    Some("FieldValueDuplicate") => Cause::duplicate(field, shown),
                    _ => Cause::invalid(field, shown, &detail),
                };
                // An unchanged value keeps passing on update, unless the rule is about the change.
                if rule.uses_old_self || !ratchet {
                    out.push(cause);
                }
            }
            Err(e) => {
                let msg = if e.starts_with("no such overload") {
                    format!(
                        "'{e}': call arguments did not match a supported operator, function or \
                         macro signature for rule: {}",
                        rule.error_string()
                    )
                } else {
                    format!("{e} evaluating rule: {}", rule.error_string())
                };
                out.push(Cause::invalid(path, Bad::Value(&type_name), &msg));
            }
        }
    }
}

/// Runs one program; Ok with its verdict, or Err worded as cel-go words the error.
fn run(
    program: &Program,
    self_value: &cel::Value,
    old: Option<&cel::Value>,
) -> Result<bool, String> {
    let Some(env) = ENV.as_ref() else {
        return Err("the CEL environment did not build".to_string());
    };
    let mut context = Context::with_env(env.clone());
    add_variable(&mut context, "self", self_value.clone())?;
    if let Some(old) = old {
        add_variable(&mut context, "oldSelf", old.clone())?;
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(_) => Err("no such overload: the rule did not give a bool".to_string()),
        Err(ExecutionError::NoSuchKey(key)) => Err(format!("no such key: {key}")),
        Err(ExecutionError::NoSuchOverload(_)) => Err("no such overload".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// A JSON value as the CEL value a rule sees: typed by the schema (an `integer` is an int,
/// a `number` a double) and with property names escaped (`package` is `__package__`).
fn to_cel(schema: &Schema, value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::String(s) => cel::Value::from(s.as_str()),
        // As the API server types them: a `number` is a double even when whole; an
        // `integer` holding a float is no int (there the API server's rule errors).
        Value::Number(n) => match (schema.type_name.as_deref(), n.as_i64()) {
            (Some("number"), _) | (_, None) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            (_, Some(i)) => cel::Value::Int(i),
        },
        Value::Array(items) => {
            let fallback = Schema::default();
            let sub = schema.items.as_deref().unwrap_or(&fallback);
            cel::Value::List(Arc::new(items.iter().map(|v| to_cel(sub, v)).collect()))
        }
        Value::Object(map) => {
            let mut fields = HashMap::new();
            for (k, v) in map {
                if let Some(sub) = schema.properties.get(k) {
                    if let Some(name) = escape(k) {
                        fields.insert(Key::from(name), to_cel(sub, v));
                    }
                } else if let Some(sub) = schema.additional_properties.as_deref() {
                    fields.insert(Key::from(k.clone()), to_cel(sub, v));
                }
            }
            cel::Value::Map(Map::from(fields))
        }
    }
}

/// The root object with what the API server adds to its CEL type: apiVersion, kind, and
/// metadata's name and generateName.
fn with_root_fields(value: cel::Value, object: &Value) -> cel::Value {
    let cel::Value::Map(map) = value else {
        return value;
    };
    let mut fields: HashMap<Key, cel::Value> = (*map.map).clone();
    for key in ["apiVersion", "kind"] {
        if let Some(s) = object.get(key).and_then(Value::as_str) {
            fields.insert(Key::from(key), cel::Value::from(s));
        }
    }
    let mut metadata = HashMap::new();
    for key in ["name", "generateName"] {
        if let Some(s) = object
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
        {
            metadata.insert(Key::from(key), cel::Value::from(s));
        }
    }
    fields.insert(Key::from("metadata"), cel::Value::Map(Map::from(metadata)));
    cel::Value::Map(Map::from(fields))
}

/// A property name as CEL expressions name it (apiserver `cel.Escape`): CEL keywords are
/// wrapped in `__`, and `__`, `.`, `-` and `/` spelled out; None for names no rule can
/// reach (a leading digit, other characters).
pub(super) fn escape(name: &str) -> Option<String> {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}
