//! Rules on changes (CEL transition rules): an in-place update needs a new version and a
//! new image together; a package's identity and an assignment's package never change.
//!
//! Every change is also checked offline against the object as stored, as `appattach
//! validate` checks a manifest against the cluster: it must agree with the API server.

use serde_json::{Value, json};

use crate::support::{
    TestNamespace, assert_names, assert_offline_accepts, assert_offline_agrees,
    host_pool_assignment, package, set, user_assignment,
};

/// Applies a change that must be refused, naming `fragments`, and checks that the offline
/// check refuses it just so against `live`.
async fn refused_change(ns: &TestNamespace, live: &Value, change: &Value, fragments: &[&str]) {
    let status = ns.refusal(change).await;
    assert_names(&status.message, fragments);
    assert_offline_agrees(change, Some(live), &status);
}

/// Applies a change that must be accepted, by the offline check against `live` too;
/// returns the object as stored.
async fn accepted_change(ns: &TestNamespace, live: &Value, change: &Value) -> Value {
    assert_offline_accepts(change, Some(live));
    ns.applied(change).await
}

#[tokio::test]
async fn same_version_with_new_image_is_refused_at_apply() {
    let ns = TestNamespace::new("same_version_new_image").await;
    let p = package("p");
    let live = ns.applied(&p).await;
    let change = set(
        p,
        "/spec/image/path",
        json!(r"\\fs.contoso.com\appattach\Contoso.App_1.0.0.1.cim"),
    );
    refused_change(
        &ns,
        &live,
        &change,
        &[
            "spec.package.version",
            "must change when spec.image.path changes",
        ],
    )
    .await;
}

#[tokio::test]
async fn new_version_with_the_same_image_is_refused_at_apply() {
    let ns = TestNamespace::new("new_version_same_image").await;
    let p = package("p");
    let live = ns.applied(&p).await;
    let change = set(p, "/spec/package/version", json!("1.0.0.1"));
    refused_change(
        &ns,
        &live,
        &change,
        &[
            "spec.image.path",
            "must change when spec.package.version changes",
        ],
    )
    .await;
}

#[tokio::test]
async fn new_version_with_new_image_is_accepted_higher_or_lower() {
    let ns = TestNamespace::new("new_version_new_image").await;
    let p = package("p");
    let live = ns.applied(&p).await;
    let up = set(
        set(p, "/spec/package/version", json!("1.1.0.0")),
        "/spec/image/path",
        json!(r"\\fs.contoso.com\appattach\Contoso.App_1.1.0.0.cim"),
    );
    let live = accepted_change(&ns, &live, &up).await;
    assert_eq!(live["metadata"]["generation"], 2);
    let down = set(
        set(up, "/spec/package/version", json!("0.9.0.0")),
        "/spec/image/path",
        json!(r"\\fs.contoso.com\appattach\Contoso.App_0.9.0.0.vhdx"),
    );
    let live = accepted_change(&ns, &live, &down).await;
    assert_eq!(live["metadata"]["generation"], 3);
}

#[tokio::test]
async fn other_changes_keep_version_and_image() {
    let ns = TestNamespace::new("other_changes").await;
    let p = package("p");
    let live = ns.applied(&p).await;
    accepted_change(&ns, &live, &set(p, "/spec/state", json!("Inactive"))).await;
}

#[tokio::test]
async fn package_identity_is_immutable() {
    let ns = TestNamespace::new("package_identity").await;
    let p = package("p");
    let live = ns.applied(&p).await;
    for (pointer, value, field) in [
        (
            "/spec/package/name",
            json!("Contoso.Other"),
            "spec.package.name is immutable",
        ),
        (
            "/spec/package/publisher",
            json!("CN=Fabrikam"),
            "spec.package.publisher is immutable",
        ),
        (
            "/spec/package/architecture",
            json!("arm64"),
            "spec.package.architecture is immutable",
        ),
    ] {
        refused_change(&ns, &live, &set(p.clone(), pointer, value), &[field]).await;
    }
}

#[tokio::test]
async fn package_ref_is_immutable_on_both_assignment_kinds() {
    let ns = TestNamespace::new("package_ref_immutable").await;
    for assignment in [host_pool_assignment("a", "p"), user_assignment("u", "p")] {
        let live = ns.applied(&assignment).await;
        let change = set(assignment, "/spec/packageRef/name", json!("other"));
        refused_change(&ns, &live, &change, &["spec.packageRef.name is immutable"]).await;
    }
}

#[tokio::test]
async fn validate_says_what_the_api_server_says_about_a_change_with_a_schema_error() {
    let ns = TestNamespace::new("change_with_schema_error").await;
    let p = package("p");
    let live = ns.applied(&p).await;
    // A schema error keeps the transition rules from running: the version change without
    // a new image goes unremarked until the location is fixed.
    let change = set(
        set(p, "/spec/package/version", json!("1.0.0.1")),
        "/spec/location",
        json!("x".repeat(65)),
    );
    refused_change(&ns, &live, &change, &["spec.location", "not checked"]).await;
}

#[tokio::test]
async fn validate_says_what_the_api_server_says_about_a_changed_and_an_unchanged_field() {
    let ns = TestNamespace::new("changed_and_unchanged").await;
    let p = package("p");
    let live = ns.applied(&p).await;
    // Two rule errors at once, one a transition rule, one not.
    let change = set(
        set(p, "/spec/package/publisher", json!("CN=Fabrikam")),
        "/spec/image/format",
        json!("VHD"),
    );
    refused_change(
        &ns,
        &live,
        &change,
        &["spec.package.publisher is immutable", "spec.image.format"],
    )
    .await;
}
