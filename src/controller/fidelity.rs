//! Every request body the controller sends, checked against the published schema of its
//! operation (`tests/fixtures/arm-request-schemas.json`, resolved from the REST API
//! descriptions): no property the schema lacks, none it marks read-only, every required
//! one, and the right types and enum values.

use serde_json::{Value, json};

use super::build::{self, Principal};
use super::decide::msix_body;
use crate::arm::models::{PrincipalType, SendMessage};
use crate::resources::AppAttachPackageSpec;

const SCHEMAS: &str = include_str!("../../tests/fixtures/arm-request-schemas.json");

fn check(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    if schema["readOnly"] == true {
        errors.push(format!("{path}: read-only, must not be sent"));
        return;
    }
    let ty = schema["type"].as_str();
    match value {
        Value::Object(map) => {
            if ty.is_some_and(|t| t != "object") {
                errors.push(format!("{path}: an object where the schema has {ty:?}"));
                return;
            }
            for (k, v) in map {
                let sub = &schema["properties"][k];
                if !sub.is_null() {
                    check(v, sub, &format!("{path}.{k}"), errors);
                } else if schema["additionalProperties"].is_object() {
                    check(
                        v,
                        &schema["additionalProperties"],
                        &format!("{path}.{k}"),
                        errors,
                    );
                } else {
                    errors.push(format!("{path}.{k}: not in the schema"));
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                if !map.contains_key(r.as_str().unwrap_or_default()) {
                    errors.push(format!(
                        "{path}.{}: required, missing",
                        r.as_str().unwrap_or_default()
                    ));
                }
            }
        }
        Value::Array(items) => {
            if ty != Some("array") {
                errors.push(format!("{path}: an array where the schema has {ty:?}"));
                return;
            }
            for (i, item) in items.iter().enumerate() {
                check(item, &schema["items"], &format!("{path}[{i}]"), errors);
            }
        }
        Value::String(s) => {
            if ty != Some("string") {
                errors.push(format!("{path}: a string where the schema has {ty:?}"));
            } else if let Some(allowed) = schema["enum"].as_array()
                && !allowed.iter().any(|a| a == s)
            {
                errors.push(format!("{path}: {s:?} is not one of {allowed:?}"));
            }
        }
        Value::Bool(_) if ty != Some("boolean") => {
            errors.push(format!("{path}: a boolean where the schema has {ty:?}"));
        }
        Value::Number(_) if !matches!(ty, Some("integer" | "number")) => {
            errors.push(format!("{path}: a number where the schema has {ty:?}"));
        }
        Value::Null => errors.push(format!("{path}: null is never sent")),
        _ => {}
    }
}

fn assert_matches(operation: &str, body: &Value) {
    let schemas: Value = serde_json::from_str(SCHEMAS).expect("the fixture is JSON");
    let schema = &schemas[operation];
    assert!(schema.is_object(), "no schema for {operation}");
    let mut errors = vec![];
    check(body, schema, "", &mut errors);
    assert!(
        errors.is_empty(),
        "{operation}: {errors:#?}\nbody: {body:#}"
    );
}

fn spec() -> AppAttachPackageSpec {
    serde_yaml_ng::from_str(
        r#"
location: westeurope
image: {path: '\\fs\apps\a.cim'}
package:
  type: Msix
  name: Contoso.Expenses
  publisher: CN=Contoso
  version: 2.4.1.0
  relativePath: \Contoso.Expenses_2.4.1.0_x64__abc
  applications: [{id: App, displayName: Expenses}]
  dependencies: [{name: Microsoft.VCLibs.140.00, publisher: CN=Microsoft, minVersion: 14.0.0.0}]
certificate: {subject: CN=Contoso, expiry: '2030-01-01T00:00:00Z', timestamped: true}
registration: LogonBlocking
"#,
    )
    .expect("a spec")
}

fn desired() -> build::Desired {
    build::build(
        &spec(),
        "ns/expenses",
        "00000000-0000-0000-0000-000000000000",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DesktopVirtualization/appAttachPackages/ns-expenses",
        &["/subscriptions/s/resourceGroups/rg/providers/Microsoft.DesktopVirtualization/hostPools/hp".into()],
        &[Principal {
            object_id: "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5".into(),
            kind: PrincipalType::Group,
        }],
    )
}

#[test]
fn the_app_attach_package_put_matches_the_published_schema() {
    assert_matches(
        "PUT appAttachPackages",
        &serde_json::to_value(&desired().package).unwrap(),
    );
}

#[test]
fn the_role_assignment_put_matches_the_published_schema() {
    for role in desired().roles.values() {
        assert_matches("PUT roleAssignments", &serde_json::to_value(role).unwrap());
    }
}

#[test]
fn the_msix_package_put_matches_the_published_schema() {
    assert_matches(
        "PUT msixPackages",
        &serde_json::to_value(msix_body(&desired())).unwrap(),
    );
}

#[test]
fn the_drain_patch_and_the_user_message_match_the_published_schemas() {
    assert_matches("PATCH sessionHosts", &crate::backend::drain_body(false));
    let message = SendMessage {
        message_title: Some("Contoso Expenses is being updated".into()),
        message_body: Some("at your next sign-in".into()),
    };
    assert_matches("POST sendMessage", &serde_json::to_value(message).unwrap());
}

#[test]
fn the_checker_catches_what_the_schema_forbids() {
    let mut errors = vec![];
    let schemas: Value = serde_json::from_str(SCHEMAS).unwrap();
    let bad = json!({"location": "westeurope", "id": "/x", "properties": {"hostPoolReferences": "hp", "surprise": 1,
        "failHealthCheckOnStagingFailure": "Sometimes"}});
    check(&bad, &schemas["PUT appAttachPackages"], "", &mut errors);
    let text = errors.join("\n");
    for expected in [
        ".id: read-only",
        "hostPoolReferences: a string",
        ".surprise: not in the schema",
        "Sometimes",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
}
