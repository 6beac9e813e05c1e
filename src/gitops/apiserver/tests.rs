//! Unit tests of the offline API server: each piece, with the API server's exact words
//! (taken from kubernetes 1.36; the integration tests compare with a real one).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::cel::escape;
use super::schema::{KEYWORDS, Schema, apply_defaults};
use super::{KINDS, Refusal, check, go_float, go_quote, message};

fn package() -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "AppAttachPackage",
        "metadata": {"name": "p"},
        "spec": {
            "location": "westeurope",
            "image": {"path": r"\\fs.contoso.com\appattach\Contoso.App_1.0.0.0.cim"},
            "package": {
                "type": "Msix",
                "name": "Contoso.App",
                "publisher": "CN=Contoso",
                "version": "1.0.0.0"
            }
        }
    })
}

fn host_pool_assignment() -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "HostPoolAssignment",
        "metadata": {"name": "a"},
        "spec": {
            "packageRef": {"name": "p"},
            "hostPools": [{"name": "hp-pilot", "ring": 0}, {"name": "hp-prod", "ring": 1}]
        }
    })
}

/// `value` with `pointer` set to `new` (the parent must exist).
fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match value.pointer_mut(parent).unwrap() {
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = new,
        other => {
            other.as_object_mut().unwrap().insert(key.to_string(), new);
        }
    }
    value
}

/// `value` without `pointer`.
fn without(mut value: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .remove(key);
    value
}

/// The refusals as the API server's texts.
fn texts(refusals: &[Refusal]) -> Vec<String> {
    refusals.iter().map(Refusal::to_string).collect()
}

const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked \
    because the object was invalid; correct the existing errors to complete validation";

fn schema_of(kind: &str) -> &'static Schema {
    &KINDS.iter().find(|k| k.kind == kind).unwrap().schema
}

#[test]
fn the_examples_of_the_tests_are_valid() {
    assert_eq!(check(&package(), None), vec![]);
    assert_eq!(check(&host_pool_assignment(), None), vec![]);
}

#[test]
fn property_names_are_escaped_as_kubernetes_escapes_them() {
    assert_eq!(escape("package").as_deref(), Some("__package__"));
    assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
    assert_eq!(escape("image").as_deref(), Some("image"));
    assert_eq!(
        escape("a.b-c/d").as_deref(),
        Some("a__dot__b__dash__c__slash__d")
    );
    assert_eq!(escape("a__b_c").as_deref(), Some("a__underscores__b_c"));
    assert_eq!(escape("1st"), None);
    assert_eq!(escape("a b"), None);
    assert_eq!(escape(""), None);
}

#[test]
fn a_rule_reads_an_escaped_property() {
    // `self.__package__.type` is the rule on spec; with the name unescaped it could not
    // refuse Appx in MsixAppAttach mode.
    let object = with(package(), "/spec/mode", json!("MsixAppAttach"));
    let object = with(object, "/spec/package/type", json!("Appx"));
    assert_eq!(
        texts(&check(&object, None)),
        [
            "spec.package.type: Invalid value: spec.package.type: Appx and AppxBundle packages \
          need spec.mode AppAttach; MsixAppAttach supports only Msix and MsixBundle"
        ]
    );
}

#[test]
fn defaults_fill_absent_fields_and_nulls_but_keep_values() {
    let schema = schema_of("AppAttachPackage");
    let mut object = with(package(), "/spec/registration", json!(null));
    let object_before = object.clone();
    apply_defaults(schema, &mut object);
    assert_eq!(object["spec"]["mode"], "AppAttach");
    assert_eq!(object["spec"]["registration"], "OnDemand");
    assert_eq!(object["spec"]["package"]["architecture"], "x64");
    assert_eq!(object["spec"]["rollout"]["soak"], "5m");
    assert_eq!(object["spec"]["rollout"]["maxUnavailableHosts"], 1);
    assert_eq!(
        object["spec"]["location"],
        object_before["spec"]["location"]
    );

    let schema = schema_of("HostPoolAssignment");
    let mut object = with(
        host_pool_assignment(),
        "/spec/hostPools",
        json!([{"name": "a"}, {"name": "b", "ring": 3}]),
    );
    apply_defaults(schema, &mut object);
    assert_eq!(object["spec"]["hostPools"][0]["ring"], 0);
    assert_eq!(object["spec"]["hostPools"][1]["ring"], 3);
}

#[test]
fn rules_see_the_defaults() {
    // Without the default mode (AppAttach), `self.mode` would be missing and the rule on
    // spec would fail to evaluate.
    let object = with(package(), "/spec/package/type", json!("AppxBundle"));
    assert_eq!(check(&object, None), vec![]);
}

#[test]
fn a_missing_field_is_required_and_keeps_the_rules_from_running() {
    let object = without(package(), "/spec/location");
    assert_eq!(
        texts(&check(&object, None)),
        ["spec.location: Required value", NOT_CHECKED]
    );
}

#[test]
fn a_value_outside_the_enum_is_unsupported() {
    let object = with(package(), "/spec/mode", json!("AppV"));
    assert_eq!(
        texts(&check(&object, None)),
        [
            r#"spec.mode: Unsupported value: "AppV": supported values: "AppAttach", "MsixAppAttach""#,
            NOT_CHECKED
        ]
    );
}

#[test]
fn string_lengths_and_patterns_are_worded_as_kube_openapi_words_them() {
    let long = with(package(), "/spec/location", json!("é".repeat(65)));
    assert_eq!(
        texts(&check(&long, None)),
        [
            "spec.location: Too long: may not be more than 64 bytes",
            NOT_CHECKED
        ]
    );
    // 64 characters of two bytes each are within maxLength: it counts characters.
    let at_limit = with(package(), "/spec/location", json!("é".repeat(64)));
    assert_eq!(check(&at_limit, None), vec![]);
    let empty = with(package(), "/spec/location", json!(""));
    assert_eq!(
        texts(&check(&empty, None)),
        [
            r#"spec.location: Invalid value: "": spec.location in body should be at least 1 chars long"#
        ]
    );
    let soak = with(package(), "/spec/rollout", json!({"soak": "300"}));
    assert_eq!(
        texts(&check(&soak, None)),
        [
            r#"spec.rollout.soak: Invalid value: "300": spec.rollout.soak in body should match '^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$'"#
        ]
    );
}

#[test]
fn numbers_out_of_range_and_of_the_wrong_type_are_worded_as_kube_openapi_words_them() {
    let negative = with(host_pool_assignment(), "/spec/hostPools/0/ring", json!(-1));
    assert_eq!(
        texts(&check(&negative, None)),
        [
            "spec.hostPools[0].ring: Invalid value: -1: spec.hostPools[0].ring in body should be \
          greater than or equal to 0"
        ]
    );
    let huge = with(
        host_pool_assignment(),
        "/spec/hostPools/0/ring",
        json!(3_000_000_000_i64),
    );
    assert_eq!(
        texts(&check(&huge, None)),
        [
            r#"<nil>: Invalid value: "": Checked value must be of type integer with format int32 in spec.hostPools[0].ring"#,
            "spec.hostPools[0].ring: Invalid value: 3000000000: spec.hostPools[0].ring in body \
             should be less than or equal to 100"
        ]
    );
    let fraction = with(host_pool_assignment(), "/spec/hostPools/0/ring", json!(1.5));
    assert_eq!(
        texts(&check(&fraction, None)),
        [
            r#"spec.hostPools[0].ring: Invalid value: "float64": spec.hostPools[0].ring in body must be of type int32: "float64""#,
            r#"<nil>: Invalid value: "": Checked value must be of type integer with format int32 in spec.hostPools[0].ring"#,
            NOT_CHECKED
        ]
    );
    let whole = with(host_pool_assignment(), "/spec/hostPools/0/ring", json!(1.0));
    assert_eq!(check(&whole, None), vec![]);
}

#[test]
fn list_sizes_are_worded_as_kube_openapi_words_them() {
    let none = with(host_pool_assignment(), "/spec/hostPools", json!([]));
    assert_eq!(
        texts(&check(&none, None)),
        ["spec.hostPools: Invalid value: 0: spec.hostPools in body should have at least 1 items"]
    );
    let pools: Vec<Value> = (0..501)
        .map(|i| json!({"name": format!("hp-{i}")}))
        .collect();
    let many = with(host_pool_assignment(), "/spec/hostPools", json!(pools));
    assert_eq!(
        texts(&check(&many, None)),
        [
            "spec.hostPools: Too many: 501: must have at most 500 items",
            NOT_CHECKED
        ]
    );
}

#[test]
fn a_null_without_a_default_is_a_type_error() {
    let object = with(package(), "/spec/location", json!(null));
    assert_eq!(
        texts(&check(&object, None)),
        [
            r#"spec.location: Invalid value: "null": spec.location in body must be of type string: "null""#,
            NOT_CHECKED
        ]
    );
    assert_eq!(
        check(&with(package(), "/spec/mode", json!(null)), None),
        vec![]
    );
}

#[test]
fn server_side_apply_refuses_undeclared_fields_before_validating() {
    // The missing location is not reported: server-side apply stops the request first.
    let object = with(
        without(package(), "/spec/location"),
        "/spec/colour",
        json!("blue"),
    );
    let refusals = check(&object, None);
    assert_eq!(
        texts(&refusals),
        [".spec.colour: field not declared in schema"]
    );
    assert_eq!(
        message(&object, &refusals),
        "failed to create typed patch object (/p; appattach.io/v1alpha1, Kind=AppAttachPackage): \
         .spec.colour: field not declared in schema"
    );
    let two = with(object, "/metadata/colour", json!("red"));
    let refusals = check(&two, None);
    assert_eq!(
        message(&two, &refusals),
        "failed to create typed patch object (/p; appattach.io/v1alpha1, Kind=AppAttachPackage): \
         errors:\n  .metadata.colour: field not declared in schema\n  .spec.colour: field not \
         declared in schema"
    );
}

#[test]
fn server_side_apply_words_values_of_the_wrong_kind_as_go_prints_them() {
    let cases = [
        (
            with(host_pool_assignment(), "/spec/hostPools/0/ring", json!("1")),
            r#".spec.hostPools[name="hp-pilot"].ring: expected numeric (int or float), got string"#,
        ),
        (
            with(package(), "/spec/location", json!(5)),
            ".spec.location: expected string, got &value.valueUnstructured{Value:5}",
        ),
        (
            with(package(), "/spec/suspend", json!("yes")),
            ".spec.suspend: expected boolean, got &{yes}",
        ),
        (
            with(package(), "/spec/image", json!("x")),
            ".spec.image: expected map, got &{x}",
        ),
        (
            with(
                host_pool_assignment(),
                "/spec/hostPools",
                json!({"name": "a"}),
            ),
            ".spec.hostPools: expected list, got &{map[name:a]}",
        ),
    ];
    for (object, expected) in cases {
        assert_eq!(texts(&check(&object, None)), [expected]);
    }
}

#[test]
fn server_side_apply_refuses_a_key_twice_or_an_item_without_its_key() {
    let twice = with(
        host_pool_assignment(),
        "/spec/hostPools",
        json!([{"name": "hp-pilot"}, {"name": "hp-pilot", "ring": 1}]),
    );
    assert_eq!(
        texts(&check(&twice, None)),
        [r#".spec.hostPools: duplicate entries for key [name="hp-pilot"]"#]
    );
    let keyless = with(
        host_pool_assignment(),
        "/spec/hostPools",
        json!([{"ring": 1}]),
    );
    assert_eq!(
        texts(&check(&keyless, None)),
        [
            r#".spec.hostPools: element 0: associative list with keys has an element that omits all key fields ["name"] (and doesn't have default values for any key fields)"#
        ]
    );
    let null = with(host_pool_assignment(), "/spec/hostPools", json!([null]));
    assert_eq!(
        texts(&check(&null, None)),
        [".spec.hostPools: element 0: associative list with keys may not have a null element"]
    );
}

#[test]
fn a_rule_on_a_string_quotes_the_value_as_go_does() {
    let object = with(
        package(),
        "/spec/image/path",
        json!(r"C:\apps\Contoso.App.cim"),
    );
    assert_eq!(
        texts(&check(&object, None)),
        [
            r#"spec.image.path: Invalid value: "C:\\apps\\Contoso.App.cim": spec.image.path must be a UNC path to a file on an SMB share, like \\server\share\folder\app.cim"#
        ]
    );
}

#[test]
fn a_rule_with_a_field_path_names_that_field_and_omits_the_object() {
    let object = with(package(), "/spec/image/format", json!("VHDX"));
    assert_eq!(
        texts(&check(&object, None)),
        [
            "spec.image.format: Invalid value: spec.image.format must agree with the extension of \
          spec.image.path (CimFS: .cim, VHDX: .vhdx, VHD: .vhd); fix one of them, or omit \
          format to infer it from the path"
        ]
    );
}

#[test]
fn transition_rules_run_only_against_an_old_object() {
    let old = package();
    let new = with(old.clone(), "/spec/package/version", json!("1.0.0.1"));
    assert_eq!(check(&new, None), vec![]);
    assert_eq!(
        texts(&check(&new, Some(&old))),
        [
            "spec.image.path: Invalid value: spec.image.path must change when \
          spec.package.version changes: a new version comes in a new image"
        ]
    );
    // An old object without the field gives the rule nothing to compare with.
    let old_without_spec = without(old, "/spec");
    assert_eq!(check(&new, Some(&old_without_spec)), vec![]);
}

#[test]
fn a_rule_that_fails_to_evaluate_is_reported_at_its_node_with_its_type() {
    // An old object the API server could not hold: the rule's `oldSelf.image` is missing.
    let old = without(package(), "/spec/image");
    assert_eq!(
        texts(&check(&package(), Some(&old))),
        [
            r#"spec: Invalid value: "object": no such key: image evaluating rule: spec.package.version must change when spec.image.path changes: the service refuses an in-place update to a new image with the same version"#
        ]
    );
}

#[test]
fn immutable_fields_compare_with_the_defaulted_old_object() {
    // The old object as a manifest, without the default architecture: it is x64 as stored.
    let old = package();
    let same = with(old.clone(), "/spec/package/architecture", json!("x64"));
    assert_eq!(check(&same, Some(&old)), vec![]);
    let other = with(old.clone(), "/spec/package/architecture", json!("arm64"));
    assert_eq!(
        texts(&check(&other, Some(&old))),
        [
            r#"spec.package.architecture: Invalid value: "arm64": spec.package.architecture is immutable: a package for another architecture is another AppAttachPackage"#
        ]
    );
}

#[test]
fn errors_in_unchanged_values_are_ratcheted_on_update() {
    // As if the CRD had tightened after these were stored.
    let old = with(package(), "/spec/location", json!(""));
    let old = with(old, "/spec/image/format", json!("VHD"));
    let new = with(old.clone(), "/spec/state", json!("Inactive"));
    assert_eq!(check(&new, Some(&old)), vec![]);
    assert_eq!(check(&new, None).len(), 2);
    // A changed value is checked again.
    let changed = with(
        new,
        "/spec/image/path",
        json!(r"\\fs\apps\Contoso.App_2.cim"),
    );
    let changed = with(changed, "/spec/package/version", json!("2.0.0.0"));
    assert_eq!(
        texts(&check(&changed, Some(&old))),
        [
            "spec.image.format: Invalid value: spec.image.format must agree with the extension of \
          spec.image.path (CimFS: .cim, VHDX: .vhdx, VHD: .vhd); fix one of them, or omit \
          format to infer it from the path"
        ]
    );
}

#[test]
fn metadata_name_must_be_a_dns_subdomain_on_create() {
    let upper = with(package(), "/metadata/name", json!("Contoso"));
    assert_eq!(
        texts(&check(&upper, None)),
        [
            r#"metadata.name: Invalid value: "Contoso": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        ]
    );
    let missing = without(package(), "/metadata/name");
    assert_eq!(
        texts(&check(&missing, None)),
        [
            "metadata.name: Required value: name or generateName is required",
            NOT_CHECKED
        ]
    );
    assert_eq!(
        check(&with(package(), "/metadata/name", json!("a.b-c")), None),
        vec![]
    );
}

#[test]
fn labels_and_annotations_must_be_label_keys_and_values() {
    let object = with(
        package(),
        "/metadata/labels",
        json!({"a/b": "front end", "x/y/z": "", "/n": "v"}),
    );
    let regex = "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
                 '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    assert_eq!(
        texts(&check(&object, None)),
        [
            r#"metadata.labels: Invalid value: "/n": prefix part must be non-empty"#.to_string(),
            r#"metadata.labels: Invalid value: "front end": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#
                .to_string(),
            format!(
                r#"metadata.labels: Invalid value: "x/y/z": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character {regex} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#
            ),
        ]
    );
    // Annotation keys are checked in lower case and quoted as written.
    let object = with(
        package(),
        "/metadata/annotations",
        json!({"Example.COM/Ok": "v"}),
    );
    assert_eq!(check(&object, None), vec![]);
    let object = with(package(), "/metadata/annotations", json!({"A.COM/x_": "v"}));
    assert_eq!(
        texts(&check(&object, None)),
        [format!(
            r#"metadata.annotations: Invalid value: "A.COM/x_": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character {regex}"#
        )]
    );
}

#[test]
fn the_message_aggregates_causes_as_the_api_server_does() {
    let one = [Refusal {
        field: "spec.location".into(),
        detail: "Required value".into(),
    }];
    assert_eq!(
        message(&package(), &one),
        r#"AppAttachPackage.appattach.io "p" is invalid: spec.location: Required value"#
    );
    let mut three = one.to_vec();
    three.push(one[0].clone());
    three.push(Refusal {
        field: "spec.mode".into(),
        detail: "Unsupported value: \"AppV\"".into(),
    });
    assert_eq!(
        message(&package(), &three),
        r#"AppAttachPackage.appattach.io "p" is invalid: [spec.location: Required value, spec.mode: Unsupported value: "AppV"]"#
    );
    assert_eq!(message(&package(), &[]), "");
}

#[test]
fn values_are_printed_as_go_prints_them() {
    assert_eq!(go_quote(r#"a\b"c"#), r#""a\\b\"c""#);
    assert_eq!(go_quote("tab\there\n"), r#""tab\there\n""#);
    assert_eq!(go_quote("\u{1}é\u{a0}"), r#""\x01é\u00a0""#);
    assert_eq!(go_float(1.5), "1.5");
    assert_eq!(go_float(100.0), "100");
    assert_eq!(go_float(1e21), "1e+21");
    assert_eq!(go_float(1.5e-5), "1.5e-05");
    assert_eq!(go_float(-2.5e-7), "-2.5e-07");
}

#[test]
fn an_unknown_kind_is_refused_naming_the_kinds() {
    let object = with(package(), "/kind", json!("Pod"));
    assert_eq!(
        texts(&check(&object, None)),
        [
            r#"kind: Unsupported value: "Pod": supported values: "AppAttachPackage", "HostPoolAssignment", "UserAssignment", "BackendTarget""#
        ]
    );
}

/// Every rule of the CRDs compiles, and the offline schema understands every keyword they use.
#[test]
fn the_crds_use_only_what_the_offline_check_understands() {
    fn walk(path: &str, json: &Value, rules: &mut usize) {
        let Some(map) = json.as_object() else { return };
        for (key, value) in map {
            assert!(
                KEYWORDS.contains(&key.as_str()),
                "{path}: {key} is not understood"
            );
            if key == "format" && !path.starts_with(".status") {
                assert!(
                    matches!(value.as_str(), Some("int32" | "int64")),
                    "{path}: format {value} is not checked offline"
                );
            }
            if key == "x-kubernetes-validations" {
                for rule in value.as_array().unwrap() {
                    *rules += 1;
                    for k in rule.as_object().unwrap().keys() {
                        assert!(
                            ["rule", "message", "fieldPath", "reason"].contains(&k.as_str()),
                            "{path}: rule key {k} is not understood"
                        );
                    }
                }
            }
        }
        if let Some(props) = map.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                walk(&format!("{path}.{name}"), sub, rules);
            }
        }
        if let Some(items) = map.get("items") {
            walk(&format!("{path}[]"), items, rules);
        }
    }
    let mut rules = 0;
    for crd in crate::resources::crds() {
        let json = serde_json::to_value(&crd).unwrap();
        walk(
            "",
            &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &mut rules,
        );
    }
    assert_eq!(
        rules, 15,
        "the CRDs' rules were counted when this test was written"
    );

    fn compiled(schema: &Schema, count: &mut usize) {
        for rule in &schema.rules {
            assert!(rule.compiles(), "{rule:?}");
            *count += 1;
        }
        schema.properties.values().for_each(|s| compiled(s, count));
        schema.items.iter().for_each(|s| compiled(s, count));
    }
    let mut count = 0;
    KINDS.iter().for_each(|k| compiled(&k.schema, &mut count));
    assert_eq!(count, 15);
    assert_eq!(KINDS.len(), 4);
}

/// Any JSON value, several levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9 .\\\\-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_string()),
                    Just("metadata".to_string()),
                    Just("name".to_string()),
                    Just("hostPools".to_string()),
                    Just("package".to_string()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever a manifest holds, the check answers instead of panicking.
    #[test]
    fn the_check_never_panics(spec in any_json(), metadata in any_json(), old in any_json()) {
        for (kind, base) in [("AppAttachPackage", package()), ("HostPoolAssignment", host_pool_assignment())] {
            let mut object = with(base.clone(), "/spec", spec.clone());
            object["metadata"] = metadata.clone();
            let refusals = check(&object, Some(&old));
            let _ = message(&object, &refusals);
            let _ = check(&object, None);
            // A mutation of a valid manifest at any depth.
            let mut mutated = base.clone();
            mutated["spec"]["package"] = spec.clone();
            mutated["spec"]["hostPools"] = json!([spec.clone()]);
            let _ = check(&mutated, Some(&base));
            prop_assert_eq!(object["kind"].as_str(), Some(kind));
        }
        let _ = check(&spec, None);
    }
}

/// A BackendTarget's credential rules, offline: each method with what it needs passes;
/// a ClientSecret target without its Secret, or a secret with another method, is refused
/// naming the field.
#[test]
fn a_backend_targets_credential_needs_what_its_method_needs() {
    let target = |credential: Value| {
        json!({
            "apiVersion": "appattach.io/v1alpha1",
            "kind": "BackendTarget",
            "metadata": {"name": "default", "namespace": "team-a"},
            "spec": {
                "tenantId": "11111111-1111-1111-1111-111111111111",
                "subscriptionId": "22222222-2222-2222-2222-222222222222",
                "resourceGroup": "rg-avd",
                "credential": credential,
            },
        })
    };
    let id = "33333333-3333-3333-3333-333333333333";
    for good in [
        json!({"method": "WorkloadIdentity", "clientId": id}),
        json!({"method": "ClientSecret", "clientId": id, "clientSecretRef": {"name": "s"}}),
        json!({"method": "ManagedIdentity"}),
    ] {
        assert!(
            texts(&check(&target(good.clone()), None)).is_empty(),
            "{good}"
        );
    }
    let refused = texts(&check(
        &target(json!({"method": "ClientSecret", "clientId": id})),
        None,
    ));
    assert!(
        refused
            .iter()
            .any(|t| t.contains("spec.credential.clientSecretRef")),
        "{refused:?}"
    );
    let refused = texts(&check(
        &target(json!({"method": "WorkloadIdentity", "clientSecretRef": {"name": "s"}})),
        None,
    ));
    assert!(
        refused.iter().any(|t| t.contains("clientId")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|t| t.contains("clientSecretRef")),
        "{refused:?}"
    );
}
