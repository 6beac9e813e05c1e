//! Bad manifests are refused at apply, by the schema or a CEL rule, with a message that
//! names the field and says what is allowed. Each rule also has a case it must accept, so
//! a rule that refused everything would fail here too.

use serde_json::json;

use crate::support::{
    TestNamespace, assert_names, host_pool_assignment, package, remove, set, user_assignment,
};

/// A test that applies `$object` and expects a refusal naming every fragment.
macro_rules! refused {
    ($name:ident, $object:expr, [$($fragment:expr),+ $(,)?]) => {
        #[tokio::test]
        async fn $name() {
            let ns = TestNamespace::new(stringify!($name)).await;
            let message = ns.refused(&$object).await;
            assert_names(&message, &[$($fragment),+]);
        }
    };
}

/// A test that applies `$object` and expects it accepted.
macro_rules! accepted {
    ($name:ident, $object:expr) => {
        #[tokio::test]
        async fn $name() {
            let ns = TestNamespace::new(stringify!($name)).await;
            if let Err(e) = ns.apply(&$object).await {
                panic!("a valid manifest was refused: {e}");
            }
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
