//! Bad manifests are refused at apply, by the schema or a CEL rule, with a message that
//! names the field and says what is allowed. Each rule also has a case it must accept, so
//! a rule that refused everything would fail here too.
//!
//! Every case also checks that the offline check of `appattach validate` agrees with the
//! API server: the same causes, worded the same, and nothing on what it accepts.

use serde_json::json;

use crate::support::{
    TestNamespace, assert_names, assert_offline_accepts, assert_offline_agrees,
    host_pool_assignment, package, remove, set, user_assignment,
};

/// A test that applies `$object` and expects a refusal naming every fragment, and the
/// offline check to refuse it just so.
macro_rules! refused {
    ($name:ident, $object:expr, [$($fragment:expr),+ $(,)?]) => {
        #[tokio::test]
        async fn $name() {
            let ns = TestNamespace::new(stringify!($name)).await;
            let object = $object;
            let status = ns.refusal(&object).await;
            assert_names(&status.message, &[$($fragment),+]);
            assert_offline_agrees(&object, None, &status);
        }
    };
}

/// A test that applies `$object` and expects it accepted, by the offline check too.
macro_rules! accepted {
    ($name:ident, $object:expr) => {
        #[tokio::test]
        async fn $name() {
            let ns = TestNamespace::new(stringify!($name)).await;
            let object = $object;
            ns.applied(&object).await;
            assert_offline_accepts(&object, None);
        }
    };
}

fn msix_app_attach(package_type: &str) -> serde_json::Value {
    let p = set(package("p"), "/spec/mode", json!("MsixAppAttach"));
    set(p, "/spec/package/type", json!(package_type))
}

// Package types: all four in AppAttach, only Msix and MsixBundle in MsixAppAttach.
refused!(
    appx_in_msix_app_attach_mode_is_refused_at_apply,
    msix_app_attach("Appx"),
    [
        "spec.package.type",
        "MsixAppAttach supports only Msix and MsixBundle"
    ]
);
refused!(
    appx_bundle_in_msix_app_attach_mode_is_refused_at_apply,
    msix_app_attach("AppxBundle"),
    [
        "spec.package.type",
        "MsixAppAttach supports only Msix and MsixBundle"
    ]
);
accepted!(
    msix_bundle_in_msix_app_attach_mode_is_accepted,
    msix_app_attach("MsixBundle")
);
accepted!(
    appx_bundle_in_app_attach_mode_is_accepted,
    set(package("p"), "/spec/package/type", json!("AppxBundle"))
);
refused!(
    unknown_package_type_is_refused_at_apply,
    set(package("p"), "/spec/package/type", json!("Exe")),
    ["spec.package.type", "Unsupported value", "Msix"]
);
refused!(
    unknown_mode_is_refused_at_apply,
    set(package("p"), "/spec/mode", json!("AppV")),
    ["spec.mode", "Unsupported value", "AppAttach"]
);

// Images: a UNC path whose extension names the format.
refused!(
    image_format_that_disagrees_with_the_extension_is_refused_at_apply,
    set(package("p"), "/spec/image/format", json!("VHDX")),
    [
        "spec.image.format",
        "must agree with the extension of spec.image.path"
    ]
);
accepted!(
    image_format_that_agrees_with_an_upper_case_extension_is_accepted,
    set(
        set(
            package("p"),
            "/spec/image/path",
            json!(r"\\fs\apps\Contoso.App.VHDX")
        ),
        "/spec/image/format",
        json!("VHDX")
    )
);
refused!(
    image_path_that_is_a_local_path_is_refused_at_apply,
    set(
        package("p"),
        "/spec/image/path",
        json!(r"C:\apps\Contoso.App.cim")
    ),
    ["spec.image.path", "must be a UNC path"]
);
refused!(
    image_path_with_forward_slashes_is_refused_at_apply,
    set(
        package("p"),
        "/spec/image/path",
        json!("//fs/apps/Contoso.App.cim")
    ),
    ["spec.image.path", "must be a UNC path"]
);
refused!(
    image_path_with_an_unknown_extension_is_refused_at_apply,
    set(
        package("p"),
        "/spec/image/path",
        json!(r"\\fs\apps\Contoso.App.msix")
    ),
    ["spec.image.path", "must end in .cim (CimFS), .vhdx or .vhd"]
);
refused!(
    unknown_image_format_is_refused_at_apply,
    set(package("p"), "/spec/image/format", json!("ISO")),
    ["spec.image.format", "Unsupported value"]
);

// Versions: four dot-separated integers, each 0 to 65535.
refused!(
    version_with_three_parts_is_refused_at_apply,
    set(package("p"), "/spec/package/version", json!("1.2.3")),
    ["spec.package.version", "four dot-separated integers"]
);
refused!(
    version_with_a_part_over_65535_is_refused_at_apply,
    set(package("p"), "/spec/package/version", json!("1.2.3.65536")),
    ["spec.package.version", "each 0 to 65535"]
);
refused!(
    version_with_letters_is_refused_at_apply,
    set(package("p"), "/spec/package/version", json!("1.2.3.beta")),
    ["spec.package.version", "four dot-separated integers"]
);
accepted!(
    version_at_the_limits_is_accepted,
    set(
        package("p"),
        "/spec/package/version",
        json!("65535.0.65535.0")
    )
);

// Required fields and other shapes.
refused!(
    missing_location_is_refused_at_apply,
    remove(package("p"), "/spec/location"),
    ["spec.location", "Required value"]
);
refused!(
    missing_package_version_is_refused_at_apply,
    remove(package("p"), "/spec/package/version"),
    ["spec.package.version", "Required value"]
);
refused!(
    unknown_registration_is_refused_at_apply,
    set(package("p"), "/spec/registration", json!("AtBoot")),
    [
        "spec.registration",
        "Unsupported value",
        "OnDemand",
        "LogonBlocking"
    ]
);
refused!(
    unknown_health_check_policy_is_refused_at_apply,
    set(
        package("p"),
        "/spec/healthCheckOnStagingFailure",
        json!("Ignore")
    ),
    [
        "spec.healthCheckOnStagingFailure",
        "Unsupported value",
        "DoNotFail"
    ]
);
refused!(
    certificate_expiry_that_is_not_a_timestamp_is_refused_at_apply,
    set(
        package("p"),
        "/spec/certificate",
        json!({"subject": "CN=Contoso", "expiry": "next year"})
    ),
    ["spec.certificate.expiry"]
);

// Rollout fields out of range.
refused!(
    negative_soak_is_refused_at_apply,
    set(package("p"), "/spec/rollout/soak", json!("-5m")),
    ["spec.rollout.soak"]
);
refused!(
    soak_without_a_unit_is_refused_at_apply,
    set(package("p"), "/spec/rollout/soak", json!("300")),
    ["spec.rollout.soak"]
);
refused!(
    negative_max_staging_failures_is_refused_at_apply,
    set(package("p"), "/spec/rollout/maxStagingFailures", json!(-1)),
    [
        "spec.rollout.maxStagingFailures",
        "greater than or equal to 0"
    ]
);
refused!(
    zero_max_unavailable_hosts_is_refused_at_apply,
    set(package("p"), "/spec/rollout/maxUnavailableHosts", json!(0)),
    [
        "spec.rollout.maxUnavailableHosts",
        "greater than or equal to 1"
    ]
);
refused!(
    maintenance_window_without_a_time_zone_is_refused_at_apply,
    set(
        package("p"),
        "/spec/rollout/maintenanceWindow",
        json!({"dayOfWeek": "Saturday", "startTime": "22:00", "duration": "4h"})
    ),
    ["spec.rollout.maintenanceWindow.timeZone", "Required value"]
);
refused!(
    maintenance_window_with_a_bad_start_time_is_refused_at_apply,
    set(
        package("p"),
        "/spec/rollout/maintenanceWindow",
        json!({"dayOfWeek": "Saturday", "startTime": "25:00", "duration": "4h", "timeZone": "UTC"})
    ),
    ["spec.rollout.maintenanceWindow.startTime"]
);
accepted!(
    full_rollout_settings_are_accepted,
    set(
        package("p"),
        "/spec/rollout",
        json!({
            "maxStagingFailures": 2, "soak": "1h30m", "onFailure": "Pause", "paused": true,
            "notifyUsers": true, "sessionGracePeriod": "15m", "maxUnavailableHosts": 3,
            "maintenanceWindow": {"dayOfWeek": "Sunday", "startTime": "02:00", "duration": "3h",
                                  "timeZone": "Europe/Amsterdam"}
        })
    )
);

// Host-pool assignments.
refused!(
    host_pool_assignment_without_host_pools_is_refused_at_apply,
    set(host_pool_assignment("a", "p"), "/spec/hostPools", json!([])),
    ["spec.hostPools", "at least 1"]
);
refused!(
    host_pool_assignment_with_a_host_pool_twice_is_refused_at_apply,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools",
        json!([{"name": "hp-pilot"}, {"name": "hp-pilot", "ring": 1}])
    ),
    ["spec.hostPools", "duplicate"]
);
refused!(
    negative_ring_is_refused_at_apply,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools/0/ring",
        json!(-1)
    ),
    ["spec.hostPools[0].ring", "greater than or equal to 0"]
);
refused!(
    host_pool_assignment_without_package_ref_is_refused_at_apply,
    remove(host_pool_assignment("a", "p"), "/spec/packageRef"),
    ["spec.packageRef", "Required value"]
);

// User assignments.
refused!(
    user_assignment_without_principals_is_refused_at_apply,
    set(user_assignment("u", "p"), "/spec/principals", json!([])),
    ["spec.principals", "at least 1"]
);
refused!(
    user_assignment_with_a_principal_twice_is_refused_at_apply,
    set(
        user_assignment("u", "p"),
        "/spec/principals",
        json!([{"kind": "User", "name": "bob@contoso.com"}, {"kind": "User", "name": "bob@contoso.com"}])
    ),
    ["spec.principals", "duplicate"]
);
accepted!(
    user_and_group_of_the_same_name_are_two_principals,
    set(
        user_assignment("u", "p"),
        "/spec/principals",
        json!([{"kind": "User", "name": "Finance"}, {"kind": "Group", "name": "Finance"}])
    )
);
refused!(
    unknown_principal_kind_is_refused_at_apply,
    set(
        user_assignment("u", "p"),
        "/spec/principals/0/kind",
        json!("ServicePrincipal")
    ),
    [
        "spec.principals[0].kind",
        "Unsupported value",
        "User",
        "Group"
    ]
);
refused!(
    object_id_that_is_not_a_guid_is_refused_at_apply,
    set(
        user_assignment("u", "p"),
        "/spec/principals/0/objectId",
        json!("finance-group")
    ),
    ["spec.principals[0].objectId"]
);

// What server-side apply refuses before validation: undeclared fields, values of the
// wrong kind, list items without their key.
refused!(
    validate_says_what_the_api_server_says_about_an_undeclared_field,
    set(package("p"), "/spec/colour", json!("blue")),
    [".spec.colour", "field not declared in schema"]
);
refused!(
    validate_says_what_the_api_server_says_about_undeclared_fields_in_two_places,
    set(
        set(package("p"), "/spec/image/size", json!(3)),
        "/metadata/colour",
        json!("blue")
    ),
    [".spec.image.size", ".metadata.colour"]
);
refused!(
    validate_says_what_the_api_server_says_about_an_undeclared_status_field,
    set(package("p"), "/status", json!({"colour": "blue"})),
    [".status.colour", "field not declared in schema"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_ring_given_as_a_string,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools/0/ring",
        json!("1")
    ),
    [
        ".spec.hostPools[name=\"hp-pilot\"].ring",
        "expected numeric"
    ]
);
refused!(
    validate_says_what_the_api_server_says_about_a_location_given_as_a_number,
    set(package("p"), "/spec/location", json!(5)),
    [".spec.location", "expected string"]
);
refused!(
    validate_says_what_the_api_server_says_about_suspend_given_as_a_string,
    set(package("p"), "/spec/suspend", json!("yes")),
    [".spec.suspend", "expected boolean"]
);
refused!(
    validate_says_what_the_api_server_says_about_an_image_given_as_a_string,
    set(package("p"), "/spec/image", json!(r"\\fs\apps\app.cim")),
    [".spec.image", "expected map"]
);
refused!(
    validate_says_what_the_api_server_says_about_host_pools_given_as_a_map,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools",
        json!({"name": "hp-pilot"})
    ),
    [".spec.hostPools", "expected list"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_host_pool_without_a_name,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools",
        json!([{"ring": 1}])
    ),
    [".spec.hostPools", "omits all key fields"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_principal_without_kind_or_name,
    set(
        user_assignment("u", "p"),
        "/spec/principals",
        json!([{"objectId": "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"}])
    ),
    [".spec.principals", "omits all key fields"]
);
refused!(
    validate_says_what_the_api_server_says_about_an_application_listed_twice,
    set(
        package("p"),
        "/spec/package/applications",
        json!([{"id": "App"}, {"id": "App", "displayName": "Again"}])
    ),
    [".spec.package.applications", "duplicate entries"]
);

// What the validation refuses, and how the errors combine.
refused!(
    validate_says_what_the_api_server_says_about_an_upper_case_name,
    set(package("p"), "/metadata/name", json!("Contoso")),
    ["metadata.name", "RFC 1123"]
);
refused!(
    validate_says_what_the_api_server_says_about_bad_labels,
    set(
        package("p"),
        "/metadata/labels",
        json!({
            "a/b/c": "x", "tier": "front end", "example.com/": "v",
            "Example.com/app": "v", "long": "v".repeat(64)
        })
    ),
    [
        "metadata.labels",
        "a valid label key",
        "prefix part",
        "name part"
    ]
);
refused!(
    validate_says_what_the_api_server_says_about_a_bad_annotation_key,
    set(
        package("p"),
        "/metadata/annotations",
        json!({"Example.COM/Note_": "x", "fine.example.com/Key": "y"})
    ),
    ["metadata.annotations", "Example.COM/Note_"]
);
refused!(
    validate_says_what_the_api_server_says_about_annotations_over_256_kib,
    set(
        package("p"),
        "/metadata/annotations",
        json!({"note": "x".repeat(256 << 10)})
    ),
    ["metadata.annotations", "Too long"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_location_too_long,
    set(package("p"), "/spec/location", json!("x".repeat(65))),
    ["spec.location", "Too long"]
);
refused!(
    validate_says_what_the_api_server_says_about_an_empty_location,
    set(package("p"), "/spec/location", json!("")),
    ["spec.location", "at least 1 chars long"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_null_location,
    set(package("p"), "/spec/location", json!(null)),
    ["spec.location", "must be of type string"]
);
accepted!(
    validate_says_what_the_api_server_says_about_a_null_that_has_a_default,
    set(package("p"), "/spec/mode", json!(null))
);
refused!(
    validate_says_what_the_api_server_says_about_a_null_spec,
    set(package("p"), "/spec", json!(null)),
    ["spec", "must be of type object"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_null_host_pool,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools",
        json!([null])
    ),
    [".spec.hostPools", "null element"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_label_given_as_a_number,
    set(package("p"), "/metadata/labels", json!({"tier": 1})),
    [".metadata.labels.tier", "expected string"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_fractional_ring,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools/0/ring",
        json!(1.5)
    ),
    ["spec.hostPools[0].ring", "must be of type"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_ring_out_of_int32_range,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools/0/ring",
        json!(3_000_000_000_i64)
    ),
    ["spec.hostPools[0].ring", "less than or equal to 100"]
);
accepted!(
    validate_says_what_the_api_server_says_about_a_whole_ring_written_as_a_float,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools/0/ring",
        json!(1.0)
    )
);
refused!(
    validate_says_what_the_api_server_says_about_too_many_host_pools,
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools",
        json!(
            (0..501)
                .map(|i| json!({"name": format!("hp-{i}")}))
                .collect::<Vec<_>>()
        )
    ),
    ["spec.hostPools", "Too many"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_null_dependency,
    set(package("p"), "/spec/package/dependencies", json!([null])),
    ["spec.package.dependencies[0]", "must be of type object"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_dependency_with_a_bad_version,
    set(
        package("p"),
        "/spec/package/dependencies",
        json!([{"name": "Microsoft.VCLibs", "publisher": "CN=Microsoft", "minVersion": "14.0.30704"}])
    ),
    ["spec.package.dependencies[0].minVersion", "should match"]
);
refused!(
    validate_says_what_the_api_server_says_about_several_errors_at_once,
    set(
        set(
            remove(package("p"), "/spec/location"),
            "/spec/mode",
            json!("AppV")
        ),
        "/spec/package/version",
        json!("1")
    ),
    ["spec.location", "spec.mode", "spec.package.version"]
);
refused!(
    validate_says_what_the_api_server_says_about_a_schema_error_beside_a_rule_error,
    set(
        set(package("p"), "/spec/location", json!("")),
        "/spec/image/format",
        json!("VHD")
    ),
    ["spec.location", "spec.image.format"]
);
accepted!(
    validate_says_what_the_api_server_says_about_a_status_in_the_manifest,
    set(
        package("p"),
        "/status",
        json!({"currentVersion": "1.0.0.0"})
    )
);

// RemoteApp publishing: each group once per host pool, each application once per group.
fn publishing(groups: serde_json::Value) -> serde_json::Value {
    set(
        host_pool_assignment("a", "p"),
        "/spec/hostPools/0/remoteAppGroups",
        groups,
    )
}
accepted!(
    remote_app_groups_with_chosen_applications_are_accepted,
    publishing(json!([{"name": "ag-remote", "applications": [
        {"id": "App", "displayName": "Contoso App", "iconPath": "C:\\icons\\app.ico", "iconIndex": 0}
    ]}]))
);
refused!(
    a_remote_app_group_named_twice_is_refused_at_apply,
    publishing(json!([{"name": "ag-remote"}, {"name": "ag-remote"}])),
    [
        ".spec.hostPools[name=\"hp-pilot\"].remoteAppGroups",
        "duplicate entries for key [name=\"ag-remote\"]"
    ]
);
refused!(
    an_application_chosen_twice_is_refused_at_apply,
    publishing(json!([{"name": "ag-remote", "applications": [{"id": "App"}, {"id": "App"}]}])),
    [
        "remoteAppGroups[name=\"ag-remote\"].applications",
        "duplicate entries for key [id=\"App\"]"
    ]
);
refused!(
    an_empty_application_id_is_refused_at_apply,
    publishing(json!([{"name": "ag-remote", "applications": [{"id": ""}]}])),
    ["spec.hostPools[0].remoteAppGroups[0].applications[0].id"]
);
