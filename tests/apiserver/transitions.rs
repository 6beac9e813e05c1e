//! Rules on changes (CEL transition rules): an in-place update needs a new version and a
//! new image together; a package's identity and an assignment's package never change.

use serde_json::{Value, json};

use crate::support::{
    TestNamespace, assert_names, host_pool_assignment, package, set, user_assignment,
};

async fn created(ns: &TestNamespace, object: Value) -> Value {
    ns.apply(&object)
        .await
        .unwrap_or_else(|e| panic!("creating: {e}"));
    object
}

#[tokio::test]
async fn same_version_with_new_image_is_refused_at_apply() {
    let ns = TestNamespace::new("same_version_new_image").await;
    let p = created(&ns, package("p")).await;
    let message = ns
        .refused(&set(
            p,
            "/spec/image/path",
            json!(r"\\fs.contoso.com\appattach\Contoso.App_1.0.0.1.cim"),
        ))
        .await;
    assert_names(
        &message,
        &[
            "spec.package.version",
            "must change when spec.image.path changes",
        ],
    );
}

#[tokio::test]
async fn new_version_with_the_same_image_is_refused_at_apply() {
    let ns = TestNamespace::new("new_version_same_image").await;
    let p = created(&ns, package("p")).await;
    let message = ns
        .refused(&set(p, "/spec/package/version", json!("1.0.0.1")))
        .await;
    assert_names(
        &message,
        &[
            "spec.image.path",
            "must change when spec.package.version changes",
        ],
    );
}

#[tokio::test]
async fn new_version_with_new_image_is_accepted_higher_or_lower() {
    let ns = TestNamespace::new("new_version_new_image").await;
    let p = created(&ns, package("p")).await;
    let up = set(
        set(p, "/spec/package/version", json!("1.1.0.0")),
        "/spec/image/path",
        json!(r"\\fs.contoso.com\appattach\Contoso.App_1.1.0.0.cim"),
    );
    let live = ns
        .apply(&up)
        .await
        .expect("a higher version with a new image is accepted");
    assert_eq!(live.metadata.generation, Some(2));
    let down = set(
        set(up, "/spec/package/version", json!("0.9.0.0")),
        "/spec/image/path",
        json!(r"\\fs.contoso.com\appattach\Contoso.App_0.9.0.0.vhdx"),
    );
    let live = ns
        .apply(&down)
        .await
        .expect("a lower version with a new image is accepted");
    assert_eq!(live.metadata.generation, Some(3));
}

#[tokio::test]
async fn other_changes_keep_version_and_image() {
    let ns = TestNamespace::new("other_changes").await;
    let p = created(&ns, package("p")).await;
    ns.apply(&set(p, "/spec/state", json!("Inactive")))
        .await
        .expect("changing the state alone is accepted");
}

#[tokio::test]
async fn package_identity_is_immutable() {
    let ns = TestNamespace::new("package_identity").await;
    let p = created(&ns, package("p")).await;
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
        let message = ns.refused(&set(p.clone(), pointer, value)).await;
        assert_names(&message, &[field]);
    }
}

#[tokio::test]
async fn package_ref_is_immutable_on_both_assignment_kinds() {
    let ns = TestNamespace::new("package_ref_immutable").await;
    for assignment in [host_pool_assignment("a", "p"), user_assignment("u", "p")] {
        let a = created(&ns, assignment).await;
        let message = ns
            .refused(&set(a, "/spec/packageRef/name", json!("other")))
            .await;
        assert_names(&message, &["spec.packageRef.name is immutable"]);
    }
}
