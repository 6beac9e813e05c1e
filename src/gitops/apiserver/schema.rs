//! The CRD's structural schema, and what the API server does with it before and during
//! validation: apply defaults (apiextensions-apiserver `schema/defaulting`), and validate
//! as kube-openapi does (`pkg/validation/validate`),
//! worded as `kubeOpenAPIResultToFieldErrors` turns its errors into field errors.
//!
//! Only the keywords our CRDs use are understood; a unit test fails when a CRD starts
//! using another one.

use std::collections::BTreeMap;

use serde_json::{Number, Value};

use super::cel::{self, Rule};
use super::{Bad, Cause};

/// The keywords [`Schema`] understands (a CRD using another one fails a unit test).
#[cfg(test)]
pub(super) const KEYWORDS: &[&str] = &[
    "type",
    "format",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "enum",
    "default",
    "nullable",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
    "description",
    "title",
];

/// One node of a structural schema.
#[derive(Debug, Default)]
pub(super) struct Schema {
    /// `object`, `array`, `string`, `integer`, `number` or `boolean`.
    pub(super) type_name: Option<String>,
    /// A format the API server checks (`int32`, `int64` on integers); others are stripped,
    /// as the API server strips the formats it does not know.
    pub(super) format: Option<String>,
    pub(super) properties: BTreeMap<String, Schema>,
    pub(super) additional_properties: Option<Box<Schema>>,
    pub(super) items: Option<Box<Schema>>,
    pub(super) required: Vec<String>,
    pub(super) enumeration: Vec<Value>,
    pub(super) default: Option<Value>,
    pub(super) nullable: bool,
    pub(super) min_length: Option<u64>,
    pub(super) max_length: Option<u64>,
    pub(super) pattern: Option<String>,
    pub(super) minimum: Option<f64>,
    pub(super) maximum: Option<f64>,
    pub(super) exclusive_minimum: bool,
    pub(super) exclusive_maximum: bool,
    pub(super) min_items: Option<u64>,
    pub(super) max_items: Option<u64>,
    /// `x-kubernetes-list-type`: `atomic` (the default), `set` or `map`.
    pub(super) list_type: Option<String>,
    /// `x-kubernetes-list-map-keys` of a `map` list.
    pub(super) list_map_keys: Vec<String>,
    /// `x-kubernetes-validations`, compiled.
    pub(super) rules: Vec<Rule>,
}

impl Schema {
    /// The schema of a CRD version (`openAPIV3Schema`), with its CEL rules compiled.
    pub(super) fn from_crd(json: &Value) -> Schema {
        let string = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_string);
        let count = |key: &str| json.get(key).and_then(Value::as_u64);
        let number = |key: &str| json.get(key).and_then(Value::as_f64);
        let flag = |key: &str| json.get(key).and_then(Value::as_bool).unwrap_or(false);
        let strings = |key: &str| -> Vec<String> {
            json.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let type_name = string("type");
        let format = string("format").filter(|f| {
            // StripUnsupportedFormatsPostProcessorForVersion keeps these on numbers; the
            // string formats our CRDs use are only on status, which is never validated.
            match type_name.as_deref() {
                Some("integer") => f == "int32" || f == "int64",
                Some("number") => f == "float" || f == "double",
                _ => false,
            }
        });
        let mut schema = Schema {
            type_name,
            format,
            properties: json
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), Schema::from_crd(v)))
                        .collect()
                })
                .unwrap_or_default(),
            additional_properties: json
                .get("additionalProperties")
                .filter(|v| v.is_object())
                .map(|v| Box::new(Schema::from_crd(v))),
            items: json
                .get("items")
                .filter(|v| v.is_object())
                .map(|v| Box::new(Schema::from_crd(v))),
            required: strings("required"),
            enumeration: json
                .get("enum")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            default: json.get("default").cloned(),
            nullable: flag("nullable"),
            min_length: count("minLength"),
            max_length: count("maxLength"),
            pattern: string("pattern"),
            minimum: number("minimum"),
            maximum: number("maximum"),
            exclusive_minimum: flag("exclusiveMinimum"),
            exclusive_maximum: flag("exclusiveMaximum"),
            min_items: count("minItems"),
            max_items: count("maxItems"),
            list_type: string("x-kubernetes-list-type"),
            list_map_keys: strings("x-kubernetes-list-map-keys"),
            rules: Vec::new(),
        };
        if let Some(rules) = json
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            schema.rules = rules.iter().map(|r| Rule::compile(r, &schema)).collect();
        }
        schema
    }

    /// Whether this is a list whose items are identified by keys.
    pub(super) fn is_map_list(&self) -> bool {
        self.list_type.as_deref() == Some("map")
    }
}

/// The old item of a `map` list that has the same keys as `item` (how the API server
/// correlates list items across an update).
pub(super) fn correlated_item<'a>(
    list: &Schema,
    item: &Value,
    old: Option<&'a Value>,
) -> Option<&'a Value> {
    if !list.is_map_list() {
        return None;
    }
    let key = |v: &Value| -> Option<Vec<Value>> {
        let map = v.as_object()?;
        Some(
            list.list_map_keys
                .iter()
                .map(|k| map.get(k).cloned().unwrap_or(Value::Null))
                .collect(),
        )
    };
    let wanted = key(item)?;
    old?.as_array()?
        .iter()
        .find(|o| key(o).as_ref() == Some(&wanted))
}

/// Whether an unchanged value keeps its old errors from counting (CRD validation
/// ratcheting): deep equality, where `map` lists compare item by key whatever the order.
pub(super) fn unchanged(schema: &Schema, new: &Value, old: &Value) -> bool {
    match (new, old) {
        (Value::Array(items), Value::Array(old_items)) if schema.is_map_list() => {
            let item_schema = schema.items.as_deref();
            items.len() == old_items.len()
                && items.iter().all(|item| {
                    match (item_schema, correlated_item(schema, item, Some(old))) {
                        (Some(s), Some(o)) => unchanged(s, item, o),
                        _ => false,
                    }
                })
        }
        (Value::Object(map), Value::Object(old_map)) => {
            map.len() == old_map.len()
                && map.iter().all(|(k, v)| match old_map.get(k) {
                    Some(o) => match schema.properties.get(k) {
                        Some(s) => unchanged(s, v, o),
                        None => v == o,
                    },
                    None => false,
                })
        }
        _ => new == old,
    }
}

/// Applies the schema's defaults where a field is absent or a non-nullable null
/// (apiextensions-apiserver `structuraldefaulting.Default`), then inside every value.
pub(super) fn apply_defaults(schema: &Schema, value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, sub) in &schema.properties {
                if let Some(default) = &sub.default {
                    let missing = map.get(k).is_none_or(|v| v.is_null() && !sub.nullable);
                    if missing {
                        map.insert(k.clone(), default.clone());
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(sub) = schema.properties.get(k) {
                    apply_defaults(sub, v);
                } else if let Some(sub) = schema.additional_properties.as_deref() {
                    if v.is_null()
                        && !sub.nullable
                        && let Some(default) = &sub.default
                    {
                        *v = default.clone();
                    }
                    apply_defaults(sub, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.items.as_deref() {
                for v in items.iter_mut() {
                    if v.is_null()
                        && !sub.nullable
                        && let Some(default) = &sub.default
                    {
                        *v = default.clone();
                    }
                    apply_defaults(sub, v);
                }
            }
        }
        _ => {}
    }
}

/// A JSON value as the API server's decoder types it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Data {
    Null,
    Bool,
    String,
    Int(i64),
    Float(f64),
    Array,
    Object,
}

impl Data {
    fn of(value: &Value) -> Data {
        match value {
            Value::Null => Data::Null,
            Value::Bool(_) => Data::Bool,
            Value::String(_) => Data::String,
            // Go decodes a number as int64 when it is one, else as float64.
            Value::Number(n) => match n.as_i64() {
                Some(i) => Data::Int(i),
                None => Data::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Array(_) => Data::Array,
            Value::Object(_) => Data::Object,
        }
    }

    /// The JSON schema type kube-openapi infers for the value, and the format.
    fn schema_type(self) -> (&'static str, &'static str) {
        match self {
            Data::Null => ("null", ""),
            Data::Bool => ("boolean", ""),
            Data::String => ("string", ""),
            Data::Int(_) => ("integer", "int64"),
            Data::Float(_) => ("number", "float64"),
            Data::Array => ("array", ""),
            Data::Object => ("object", ""),
        }
    }
}

/// Validates `value` (at `path`, None at the root) against `schema` as kube-openapi does,
/// appending field errors in its order. On an update, `old` is the correlated old value:
/// errors under a value equal to it do not count (ratcheting).
pub(super) fn validate(
    schema: &Schema,
    value: &Value,
    path: Option<&str>,
    old: Option<&Value>,
    out: &mut Vec<Cause>,
) {
    let mut errors = Vec::new();
    validate_node(schema, value, path, old, &mut errors);
    if !old.is_some_and(|o| unchanged(schema, value, o)) {
        out.extend(errors);
    }
}

fn validate_node(
    schema: &Schema,
    value: &Value,
    path: Option<&str>,
    old: Option<&Value>,
    out: &mut Vec<Cause>,
) {
    let name = path.unwrap_or("");
    let data = Data::of(value);
    if data == Data::Null {
        if let Some(t) = &schema.type_name
            && !schema.nullable
        {
            out.push(type_error(path, t, "null"));
        }
        check_enum(schema, value, path, out);
        return;
    }
    if let Some(e) = type_mismatch(schema, data, path) {
        out.push(e);
    }
    match (value, data) {
        (Value::String(s), _) => {
            if let Some(e) = string_error(schema, s, path) {
                out.push(e);
            }
        }
        (_, Data::Int(_) | Data::Float(_)) => number_errors(schema, value, data, path, out),
        (Value::Array(items), _) => {
            if let Some(item_schema) = schema.items.as_deref() {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{name}[{i}]");
                    let old_item = correlated_item(schema, item, old);
                    validate(item_schema, item, Some(&item_path), old_item, out);
                }
            }
            let size = Value::from(items.len());
            if let Some(min) = schema.min_items
                && (items.len() as u64) < min
            {
                let msg = format!("{name} in body should have at least {min} items");
                out.push(Cause::invalid(path, Bad::Value(&size), &msg));
            }
            if let Some(max) = schema.max_items
                && (items.len() as u64) > max
            {
                out.push(Cause::too_many(path, items.len(), max));
            }
        }
        _ => {}
    }
    check_enum(schema, value, path, out);
    if let Value::Object(map) = value {
        let child = |k: &str| {
            if name.is_empty() {
                k.to_string()
            } else {
                format!("{name}.{k}")
            }
        };
        let old_map = old.and_then(Value::as_object);
        for (k, v) in map {
            let sub = schema
                .properties
                .get(k)
                .or(schema.additional_properties.as_deref());
            if let Some(sub) = sub {
                validate(sub, v, Some(&child(k)), old_map.and_then(|o| o.get(k)), out);
            }
        }
        for k in &schema.required {
            if !map.contains_key(k) {
                out.push(Cause::required(Some(&child(k)), ""));
            }
        }
    }
}

/// kube-openapi's type validator: the value's JSON type against the schema's, allowing
/// whole floats for integers and integers for numbers.
fn type_mismatch(schema: &Schema, data: Data, path: Option<&str>) -> Option<Cause> {
    let expected = schema.type_name.as_deref()?;
    let (actual, actual_format) = data.schema_type();
    let float_int = matches!(data, Data::Float(f) if json_integer(f)) && expected == "integer";
    let int_float = actual == "integer" && expected == "number";
    if let Some(format) = &schema.format
        && !matches!(data, Data::String | Data::Array)
        && !(expected == actual || actual_format == format || float_int || int_float)
    {
        return Some(type_error(path, format, actual_format));
    }
    (expected != actual && !float_int && !int_float).then(|| type_error(path, expected, actual))
}

/// `errors.InvalidType` as a field error: `<path> in body must be of type <t>: "<actual>"`.
fn type_error(path: Option<&str>, expected: &str, actual: &str) -> Cause {
    let name = path.unwrap_or("");
    let msg = format!(
        "{name} in body must be of type {expected}: {}",
        super::go_quote(actual)
    );
    Cause::type_invalid(path, Bad::Value(&Value::from(actual)), &msg)
}

/// Whether a float is a JSON integer as go-openapi's `swag.IsFloat64AJSONInteger` sees it.
fn json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    let whole = f.trunc();
    f == whole || (f > 0.0 && (f - whole).abs() / (f.abs() + whole.abs()) < 1e-9)
}

/// kube-openapi's string validator: maxLength, minLength, then pattern; the first that fails.
fn string_error(schema: &Schema, s: &str, path: Option<&str>) -> Option<Cause> {
    let name = path.unwrap_or("");
    let chars = s.chars().count() as u64;
    let value = Value::from(s);
    if let Some(max) = schema.max_length
        && chars > max
    {
        return Some(Cause::too_long(path, max));
    }
    if let Some(min) = schema.min_length
        && chars < min
    {
        let msg = format!("{name} in body should be at least {min} chars long");
        return Some(Cause::invalid(path, Bad::Value(&value), &msg));
    }
    if let Some(pattern) = &schema.pattern {
        let msg = match cel::regex_matches(pattern, s) {
            Ok(true) => return None,
            Ok(false) => format!("{name} in body should match '{pattern}'"),
            Err(e) => {
                format!("{name} in body should match '{pattern}, but pattern is invalid: {e}'")
            }
        };
        return Some(Cause::invalid(path, Bad::Value(&value), &msg));
    }
    None
}

/// kube-openapi's number validator: the value in range of the type's format, then
/// minimum, then maximum.
fn number_errors(
    schema: &Schema,
    value: &Value,
    data: Data,
    path: Option<&str>,
    out: &mut Vec<Cause>,
) {
    let name = path.unwrap_or("");
    let as_float = match data {
        Data::Int(i) => i as f64,
        Data::Float(f) => f,
        _ => return,
    };
    // IsValueValidAgainstRange: the value's decimal text must parse as the type's format.
    if schema.type_name.as_deref() == Some("integer") {
        let text = match data {
            Data::Int(i) => i.to_string(),
            _ => format!("{as_float}"),
        };
        let (fits, format_text) = match schema.format.as_deref() {
            Some("int32") => (text.parse::<i32>().is_ok(), "with format int32"),
            Some(_) => (text.parse::<i64>().is_ok(), "with format int64"),
            None => (text.parse::<i64>().is_ok(), "(default format)"),
        };
        if !fits {
            // A plain error, not a validation error: the API server files it under no field.
            let msg = format!("Checked value must be of type integer {format_text} in {name}");
            out.push(Cause::invalid(None, Bad::Value(&Value::from("")), &msg));
        }
    }
    // An int64 value is compared with a bound as int64, a float64 as float64, and the
    // bound printed as the same type.
    let (below, above, bound) = match data {
        Data::Int(i) => (
            schema
                .minimum
                .map(|m| i < m as i64 || (schema.exclusive_minimum && i == m as i64)),
            schema
                .maximum
                .map(|m| i > m as i64 || (schema.exclusive_maximum && i == m as i64)),
            (|b: f64| (b as i64).to_string()) as fn(f64) -> String,
        ),
        _ => (
            schema
                .minimum
                .map(|m| as_float < m || (schema.exclusive_minimum && as_float == m)),
            schema
                .maximum
                .map(|m| as_float > m || (schema.exclusive_maximum && as_float == m)),
            super::go_float as fn(f64) -> String,
        ),
    };
    if let (Some(true), Some(min)) = (below, schema.minimum) {
        let relation = if schema.exclusive_minimum {
            "greater than"
        } else {
            "greater than or equal to"
        };
        let msg = format!("{name} in body should be {relation} {}", bound(min));
        out.push(Cause::invalid(path, Bad::Value(value), &msg));
    }
    if let (Some(true), Some(max)) = (above, schema.maximum) {
        let relation = if schema.exclusive_maximum {
            "less than"
        } else {
            "less than or equal to"
        };
        let msg = format!("{name} in body should be {relation} {}", bound(max));
        out.push(Cause::invalid(path, Bad::Value(value), &msg));
    }
}

/// kube-openapi's common validator: the value must be one of the enum's.
fn check_enum(schema: &Schema, value: &Value, path: Option<&str>, out: &mut Vec<Cause>) {
    if schema.enumeration.is_empty() || schema.enumeration.iter().any(|e| same(e, value)) {
        return;
    }
    let texts: Vec<String> = schema
        .enumeration
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            other => super::go_json(other),
        })
        .collect();
    let supported: Vec<&str> = texts.iter().map(String::as_str).collect();
    out.push(Cause::not_supported(path, value, &supported));
}

/// JSON equality where numbers compare by value (an enum's `1` matches a value `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        _ => a == b,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    match (x.as_i64(), y.as_i64()) {
        (Some(a), Some(b)) => a == b,
        _ => x.as_f64() == y.as_f64(),
    }
}
