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
    let out = dry_run_apply(&ns, &deploy);
    for text in [
        "namespace/appattach-system",
        "customresourcedefinition.apiextensions.k8s.io/appattachpackages.appattach.io",
        "customresourcedefinition.apiextensions.k8s.io/hostpoolassignments.appattach.io",
        "customresourcedefinition.apiextensions.k8s.io/userassignments.appattach.io",
        "serviceaccount/appattach-controller",
        "clusterrole.rbac.authorization.k8s.io/appattach-controller",
        "clusterrolebinding.rbac.authorization.k8s.io/appattach-controller",
        "role.rbac.authorization.k8s.io/appattach-leader-election",
        "rolebinding.rbac.authorization.k8s.io/appattach-leader-election",
        "configmap/appattach-controller",
        "deployment.apps/appattach-controller",
        "service/appattach-controller-metrics",
        "poddisruptionbudget.policy/appattach-controller",
    ] {
        assert!(
            out.contains(text),
            "kubectl apply -k deploy/ lacks {text:?}:\n{out}"
        );
    }
}

/// `kubectl apply --server-side --dry-run=server -k DIR`: the API server's verdict on a
/// kustomization of deploy/, without the test namespace's -n (the objects name their own).
fn dry_run_apply(ns: &TestNamespace, dir: &std::path::Path) -> String {
    // A dry run of namespaced objects needs their namespace to exist.
    let namespace = repo_path("deploy/base/namespace.yaml");
    ns.cp
        .kubectl_output(&["apply", "--server-side", "-f", namespace.to_str().unwrap()])
        .unwrap();
    ns.cp
        .kubectl_output(&[
            "apply",
            "--server-side",
            // The RBAC test applies deploy/ for real, as another field manager.
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            dir.to_str().unwrap(),
        ])
        .unwrap()
}

/// Applies deploy/ for real, then asks the API server, as the controller's service
/// account, what it may do: its kinds, their status and finalizers, events, BackendTargets
/// (read), one Secret by name and tokens of `appattach-workload` (the targets' identities),
/// and Leases in its own namespace; not a list of Secrets, not other service accounts'
/// tokens, not other namespaces' Leases, not CRDs.
#[tokio::test]
async fn the_deploy_rbac_grants_the_controller_what_it_needs_and_no_more() {
    let ns = TestNamespace::new("deploy-rbac").await;
    let deploy = repo_path("deploy");
    ns.cp
        .kubectl_output(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=deploy-test",
            "-k",
            deploy.to_str().unwrap(),
        ])
        .unwrap();
    let sa = "system:serviceaccount:appattach-system:appattach-controller";
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", sa];
        all.extend_from_slice(args);
        // `can-i` exits 1 for "no": the answer is on stdout either way.
        match ns.cp.kubectl_output(&all) {
            Ok(out) => out.trim().to_string(),
            // "no" is exit status 1 with nothing on stderr; anything else is an error.
            Err(appattach_operator::controlplane::Error::Kubectl { status, stderr, .. })
                if status.code() == Some(1)
                    && (stderr.is_empty() || stderr.starts_with("Warning:")) =>
            {
                "no".to_string()
            }
            Err(e) => format!("{e:?}"),
        }
    };
    let allowed: &[&[&str]] = &[
        &[
            "watch",
            "appattachpackages.appattach.io",
            "--all-namespaces",
        ],
        &["patch", "hostpoolassignments.appattach.io"],
        &[
            "patch",
            "userassignments.appattach.io",
            "--subresource=status",
        ],
        &[
            "update",
            "appattachpackages.appattach.io",
            "--subresource=finalizers",
        ],
        &["create", "events.events.k8s.io"],
        &["watch", "backendtargets.appattach.io", "--all-namespaces"],
        &["get", "secrets", "-n", "team-a"],
        &[
            "create",
            "serviceaccounts/appattach-workload",
            "--subresource=token",
            "-n",
            "team-a",
        ],
        &[
            "update",
            "leases.coordination.k8s.io",
            "-n",
            "appattach-system",
        ],
    ];
    for args in allowed {
        assert_eq!(can(args), "yes", "{args:?}");
    }
    let refused: &[&[&str]] = &[
        &["list", "secrets", "--all-namespaces"],
        &["watch", "secrets", "-n", "team-a"],
        &[
            "create",
            "serviceaccounts/default",
            "--subresource=token",
            "-n",
            "team-a",
        ],
        &["patch", "backendtargets.appattach.io"],
        &["update", "leases.coordination.k8s.io", "-n", "kube-system"],
        &["create", "appattachpackages.appattach.io"],
        &["delete", "customresourcedefinitions.apiextensions.k8s.io"],
        &["list", "pods"],
    ];
    for args in refused {
        let answer = can(args);
        assert!(answer.starts_with("no"), "{args:?}: {answer}");
    }
}

#[tokio::test]
async fn the_azure_overlay_renders_the_workload_identity_service_account() {
    let ns = TestNamespace::new("deploy-wi").await;
    let overlay = repo_path("deploy/overlays/azure");
    let out = ns
        .kubectl(&["kustomize", overlay.to_str().unwrap()])
        .unwrap();
    for text in [
        "kind: ServiceAccount",
        "name: appattach-controller",
        "azure.workload.identity/client-id:",
        "azure.workload.identity/use: \"true\"",
        "kind: CustomResourceDefinition",
        "value: workload-identity",
    ] {
        assert!(out.contains(text), "the overlay lacks {text:?}:\n{out}");
    }
    // The pod label is on the Deployment's pod template, where AKS looks for it.
    let deployment = out
        .split("\n---\n")
        .find(|d| d.contains("kind: Deployment"))
        .expect("a Deployment");
    let template = deployment
        .split("template:")
        .nth(1)
        .expect("a pod template");
    assert!(
        template.contains("azure.workload.identity/use: \"true\""),
        "{deployment}"
    );
    // The API server accepts the whole overlay.
    dry_run_apply(&ns, &overlay);
}

/// The embedded overlay: one replica running the emulator in-process, its world from the
/// overlay's copy of examples/world.yaml (kept equal), its state on a claim; the API server
/// accepts it all.
#[tokio::test]
async fn the_embedded_overlay_runs_one_replica_with_the_emulator() {
    let ns = TestNamespace::new("deploy-embedded").await;
    let overlay = repo_path("deploy/overlays/embedded");
    let out = ns
        .cp
        .kubectl_output(&["kustomize", overlay.to_str().unwrap()])
        .unwrap();
    let deployment = out
        .split("\n---\n")
        .find(|d| d.contains("kind: Deployment"))
        .expect("a Deployment");
    for text in [
        "replicas: 1",
        "--world=/etc/appattach/world.yaml",
        "--state=/var/lib/appattach",
        "claimName: appattach-emulator-state",
    ] {
        assert!(deployment.contains(text), "{text:?} not in:\n{deployment}");
    }
    assert!(out.contains("kind: PersistentVolumeClaim"), "{out}");
    assert!(
        !out.contains("APPATTACH_CLOUD"),
        "no cloud, so the emulator runs:\n{out}"
    );
    let copy: appattach_operator::emulator::World = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_path("deploy/overlays/embedded/world.yaml")).unwrap(),
    )
    .unwrap();
    let original: appattach_operator::emulator::World = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_path("examples/world.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        copy, original,
        "deploy/overlays/embedded/world.yaml drifted from examples/world.yaml"
    );
    dry_run_apply(&ns, &overlay);
}

/// The image is built by the script CI runs (CI has no container engine, so the script is
/// what its runs test), holds the binary alone, and runs as the user and with the
/// arguments deploy/ gives the container.
#[test]
fn the_dockerfile_builds_with_the_ci_script_and_matches_the_deployment() {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    let ci = std::fs::read_to_string(repo_path(".ci/run")).unwrap();
    let build = "bash .ci/build-static";
    assert!(
        dockerfile.contains(&format!("RUN {build} /out/appattach")),
        "{dockerfile}"
    );
    assert!(ci.contains(&format!("{build} ")), "{ci}");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and the image: {stages:?}");
    let image = dockerfile
        .split("\nFROM scratch\n")
        .nth(1)
        .unwrap_or_else(|| {
            panic!("the image starts from scratch:\n{dockerfile}");
        });
    let copied: Vec<&str> = image.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(copied, ["COPY --from=build /out/appattach /appattach"]);
    assert!(image.contains("ENTRYPOINT [\"/appattach\"]"), "{image}");

    let deployment = std::fs::read_to_string(repo_path("deploy/base/deployment.yaml")).unwrap();
    let deployment: serde_json::Value = serde_yaml_ng::from_str(&deployment).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let user = pod["securityContext"]["runAsUser"].as_i64().unwrap();
    assert!(
        image.contains(&format!("USER {user}:{user}")),
        "the image runs as the Deployment's user {user}:\n{image}"
    );
    assert_eq!(pod["containers"][0]["args"][0], "controller");
}

/// What the controller tells a user whose cluster lacks the CRDs (and the README says),
/// run exactly as given, from the repository root, installs them.
#[tokio::test]
async fn the_advised_crd_install_command_works_from_the_repository_root() {
    let ns = TestNamespace::new("crd-advice").await;
    let advice = appattach_operator::resources::INSTALL_CRDS;
    let words: Vec<&str> = advice.split_whitespace().collect();
    assert_eq!(words[0], "kubectl", "{advice}");
    let out = ns
        .cp
        .kubectl()
        .args(&words[1..])
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{advice}` failed ({}):\n{stdout}{stderr}",
        out.status
    );
    for kind in [
        "appattachpackages.appattach.io",
        "hostpoolassignments.appattach.io",
        "userassignments.appattach.io",
        "backendtargets.appattach.io",
    ] {
        assert!(
            stdout.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{kind}"
            )),
            "`{advice}` did not apply {kind}:\n{stdout}"
        );
    }
    // The Kustomize bases still build: the CRDs alone, and deploy/ on top of them.
    for dir in ["crds", "deploy"] {
        let out = ns
            .kubectl(&["kustomize", repo_path(dir).to_str().unwrap()])
            .unwrap_or_else(|e| panic!("kubectl kustomize {dir}/: {e}"));
        assert_eq!(
            out.matches("kind: CustomResourceDefinition").count(),
            4,
            "{dir}/"
        );
    }
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    assert!(
        readme.contains(advice),
        "README.md does not give `{advice}`"
    );
}
