//! Server-side apply's first step: typing the applied object against the schema
//! (structured-merge-diff `typed.AsTyped` via the CRD's type converter). It refuses fields
//! the schema does not declare, values of the wrong kind, and items of a `map` list that
//! repeat a key, before any validation runs, and words its errors in its own way:
//! `.spec.hostPools: duplicate entries for key [name="hp-pilot"]`.
//!
//! The API server walks a map in Go's random order and stops at the first undeclared field
//! of each map; here every undeclared field is reported, in name order.

use std::sync::LazyLock;

use serde_json::Value;

use super::Refusal;
use super::schema::Schema;

/// What server-side apply knows of `metadata` (apimachinery `ObjectMeta`), as far as a
/// manifest may set it.
static OBJECT_META: LazyLock<Schema> = LazyLock::new(|| {
    let strings = serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}});
    let owner = serde_json::json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "name": {"type": "string"}, "uid": {"type": "string"},
            "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"}
        }
    });
    let string = serde_json::json!({"type": "string"});
    let integer = serde_json::json!({"type": "integer"});
    Schema::from_crd(&serde_json::json!({
        "type": "object",
        "properties": {
            "name": string, "generateName": string, "namespace": string, "selfLink": string,
            "uid": string, "resourceVersion": string, "generation": integer,
            "creationTimestamp": string, "deletionTimestamp": string,
            "deletionGracePeriodSeconds": integer,
            "labels": strings, "annotations": strings,
            "ownerReferences": {
                "type": "array", "items": owner,
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]
            },
            "finalizers": {"type": "array", "items": string, "x-kubernetes-list-type": "set"},
            "managedFields": {"type": "array", "items": {"type": "object", "additionalProperties": {}}}
        }
    }))
});

/// Server-side apply's refusals of `object` as typed by `root` (the CRD schema), or none.
pub(super) fn typed_errors(root: &Schema, object: &Value) -> Vec<Refusal> {
    let mut out = Vec::new();
    let Some(map) = object.as_object() else {
        out.push(error("", format!("expected map, got {}", go_v(object))));
        return out;
    };
    for (k, v) in map {
        let path = format!(".{k}");
        match (k.as_str(), root.properties.get(k)) {
            (_, Some(sub)) => walk(sub, v, &path, &mut out),
            ("apiVersion" | "kind", None) => scalar("string", v, &path, &mut out),
            ("metadata", None) => walk(&OBJECT_META, v, &path, &mut out),
            _ => out.push(error(&path, "field not declared in schema".to_string())),
        }
    }
    out
}

fn error(path: &str, message: String) -> Refusal {
    Refusal {
        field: path.to_string(),
        detail: message,
    }
}

/// Types one value: a map, a list or a scalar, as its schema says.
fn walk(schema: &Schema, value: &Value, path: &str, out: &mut Vec<Refusal>) {
    let is_map = schema.type_name.as_deref() == Some("object")
        || !schema.properties.is_empty()
        || schema.additional_properties.is_some();
    if is_map {
        typed_map(schema, value, path, out);
    } else if schema.type_name.as_deref() == Some("array") {
        typed_list(schema, value, path, out);
    } else if let Some(t) = schema.type_name.as_deref() {
        scalar(t, value, path, out);
    }
}

fn typed_map(schema: &Schema, value: &Value, path: &str, out: &mut Vec<Refusal>) {
    let map = match value {
        Value::Null => return,
        Value::Object(map) => map,
        other => return out.push(error(path, format!("expected map, got {}", go_v(other)))),
    };
    for (k, v) in map {
        let child = format!("{path}.{k}");
        match schema
            .properties
            .get(k)
            .or(schema.additional_properties.as_deref())
        {
            Some(sub) => walk(sub, v, &child, out),
            None => out.push(error(&child, "field not declared in schema".to_string())),
        }
    }
}

fn typed_list(schema: &Schema, value: &Value, path: &str, out: &mut Vec<Refusal>) {
    let items = match value {
        Value::Null => return,
        Value::Array(items) => items,
        other => return out.push(error(path, format!("expected list, got {}", go_v(other)))),
    };
    let fallback = Schema::default();
    let item_schema = schema.items.as_deref().unwrap_or(&fallback);
    let mut seen: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let element = match schema.list_type.as_deref() {
            Some("map") => keyed_element(schema, item_schema, item),
            Some("set") => set_element(item),
            _ => Ok(format!("[{i}]")),
        };
        let element = match element {
            Ok(e) => e,
            Err(e) => {
                // Without its key an item cannot be typed: the rest of the list is skipped.
                out.push(error(path, format!("element {i}: {e}")));
                return;
            }
        };
        if matches!(schema.list_type.as_deref(), Some("map" | "set")) {
            if seen.contains(&element) {
                out.push(error(path, format!("duplicate entries for key {element}")));
            }
            seen.push(element.clone());
        }
        walk(item_schema, item, &format!("{path}{element}"), out);
    }
}

/// The path element of an item of a `map` list: `[name="hp-pilot"]`, keys in name order.
fn keyed_element(list: &Schema, item_schema: &Schema, item: &Value) -> Result<String, String> {
    let map = match item {
        Value::Null => return Err("associative list with keys may not have a null element".into()),
        Value::Object(map) => map,
        _ => return Err("associative list with keys may not have non-map elements".into()),
    };
    let mut keys: Vec<(&str, Value)> = Vec::new();
    for key in &list.list_map_keys {
        let default = item_schema
            .properties
            .get(key)
            .and_then(|s| s.default.clone());
        if let Some(v) = map.get(key).cloned().or(default) {
            keys.push((key, v));
        }
    }
    if keys.is_empty() {
        let names: Vec<String> = list
            .list_map_keys
            .iter()
            .map(|k| super::go_quote(k))
            .collect();
        return Err(format!(
            "associative list with keys has an element that omits all key fields [{}] (and \
             doesn't have default values for any key fields)",
            names.join(" ")
        ));
    }
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = keys
        .iter()
        .map(|(k, v)| format!("{k}={}", to_string(v)))
        .collect();
    Ok(format!("[{}]", parts.join(",")))
}

/// The path element of an item of a `set` list: `[="value"]`.
fn set_element(item: &Value) -> Result<String, String> {
    match item {
        Value::Object(_) => {
            Err("associative list without keys has an element that's a map type".into())
        }
        Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
        Value::Null => {
            Err("associative list without keys has an element that's an explicit null".into())
        }
        scalar => Ok(format!("[={}]", to_string(scalar))),
    }
}

/// A scalar against its type (`validateScalar`); null is always accepted.
fn scalar(type_name: &str, value: &Value, path: &str, out: &mut Vec<Refusal>) {
    let message = match (type_name, value) {
        (_, Value::Null) => return,
        ("integer" | "number", Value::Number(_)) => return,
        ("integer" | "number", other) => {
            format!("expected numeric (int or float), got {}", go_type(other))
        }
        ("string", Value::String(_)) => return,
        ("string", other) => format!("expected string, got {}", go_sharp_v(other)),
        ("boolean", Value::Bool(_)) => return,
        ("boolean", other) => format!("expected boolean, got {}", go_v(other)),
        _ => return,
    };
    out.push(error(path, message));
}

/// A value in a path element (structured-merge-diff `value.ToString`).
fn to_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::String(s) => super::go_quote(s),
        Value::Number(n) => super::go_number(n),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", to_string(v)))
            .collect(),
    }
}

/// Go's `%T` of the decoded value.
fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Number(n) if n.as_i64().is_some() => "int64",
        Value::Number(_) => "float64",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `%v` of structured-merge-diff's value wrapper (a pointer to a struct holding it).
fn go_v(value: &Value) -> String {
    format!("&{{{}}}", plain(value))
}

/// Go's `%v` of a decoded JSON value.
fn plain(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => super::go_number(n),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(plain).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%#v` of structured-merge-diff's value wrapper.
fn go_sharp_v(value: &Value) -> String {
    format!("&value.valueUnstructured{{Value:{}}}", sharp(value))
}

/// Go's `%#v` of a decoded JSON value held in an interface.
fn sharp(value: &Value) -> String {
    match value {
        Value::Null => "interface {}(nil)".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => super::go_quote(s),
        Value::Number(n) => super::go_number(n),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(sharp).collect();
            format!("[]interface {{}}{{{}}}", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{}", super::go_quote(k), sharp(v)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", parts.join(", "))
        }
    }
}
