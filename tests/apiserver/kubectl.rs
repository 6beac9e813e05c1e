//! What kubectl shows: field documentation and the printer columns of the category.

use std::time::{Duration, Instant};

use crate::support::{TestNamespace, repo_path};

#[tokio::test]
async fn kubectl_explain_prints_the_rollout_field_descriptions() {
    let ns = TestNamespace::new("explain").await;
    // The API server publishes a new CRD's OpenAPI a moment after it is Established.
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        match ns.kubectl(&["explain", "appattachpackage.spec.rollout"]) {
            Ok(out) if out.contains("maxStagingFailures") => break out,
            other if Instant::now() > deadline => {
                panic!("kubectl explain never showed the fields: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    for text in [
        "How a version change moves across the assigned host pools",
        "soak",
        "How long a ring runs the new version",
        "onFailure",
        "maintenanceWindow",
        "maxUnavailableHosts",
    ] {
        assert!(out.contains(text), "kubectl explain lacks {text:?}:\n{out}");
    }
}

#[tokio::test]
async fn kubectl_get_appattach_lists_all_three_kinds_with_their_columns() {
    let ns = TestNamespace::new("get_category").await;
    for file in [
        "packages.yaml",
        "host-pool-assignments.yaml",
        "user-assignments.yaml",
    ] {
        let path = repo_path("examples").join(file);
        ns.kubectl(&["apply", "--server-side", "-f", path.to_str().unwrap()])
            .unwrap();
    }
    let out = ns.kubectl(&["get", "appattach"]).unwrap();
    for text in [
        "appattachpackage.appattach.io/contoso-expenses",
        "hostpoolassignment.appattach.io/contoso-expenses",
        "userassignment.appattach.io/contoso-expenses",
        "2.4.1.0",
    ] {
        assert!(
            out.contains(text),
            "kubectl get appattach lacks {text:?}:\n{out}"
        );
    }
    let headers: Vec<&str> = out.lines().filter(|l| l.starts_with("NAME")).collect();
    assert_eq!(headers.len(), 3, "one table per kind:\n{out}");
    let columns = |h: &str| h.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        columns(headers[0]),
        ["NAME", "READY", "VERSION", "REASON", "AGE"]
    );
    assert_eq!(
        columns(headers[1]),
        ["NAME", "READY", "PACKAGE", "REASON", "AGE"]
    );
    assert_eq!(
        columns(headers[2]),
        ["NAME", "READY", "PACKAGE", "REASON", "AGE"]
    );

    // The short names work too.
    for short in ["aap", "aapool", "aauser"] {
        let out = ns.kubectl(&["get", short, "-o", "name"]).unwrap();
        assert_eq!(out.lines().count(), 3, "kubectl get {short}:\n{out}");
    }
}

#[tokio::test]
async fn deploy_kustomization_installs_the_namespace_and_crds() {
    let ns = TestNamespace::new("deploy").await;
    let deploy = repo_path("deploy");
    let out = ns
        .kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-k",
            deploy.to_str().unwrap(),
        ])
        .unwrap();
    for text in [
        "namespace/appattach-system",
        "customresourcedefinition.apiextensions.k8s.io/appattachpackages.appattach.io",
        "customresourcedefinition.apiextensions.k8s.io/hostpoolassignments.appattach.io",
        "customresourcedefinition.apiextensions.k8s.io/userassignments.appattach.io",
    ] {
        assert!(
            out.contains(text),
            "kubectl apply -k deploy/ lacks {text:?}:\n{out}"
        );
    }
}

#[tokio::test]
async fn the_aks_workload_identity_overlay_renders_the_annotated_service_account() {
    let ns = TestNamespace::new("deploy-wi").await;
    let overlay = repo_path("deploy/overlays/aks-workload-identity");
    let out = ns
        .kubectl(&["kustomize", overlay.to_str().unwrap()])
        .unwrap();
    for text in [
        "kind: ServiceAccount",
        "name: appattach-controller",
        "azure.workload.identity/client-id:",
        "azure.workload.identity/use: \"true\"",
        "kind: CustomResourceDefinition",
    ] {
        assert!(out.contains(text), "the overlay lacks {text:?}:\n{out}");
    }
}
