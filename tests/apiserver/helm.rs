//! The Helm chart, deploy/helm/appattach-operator: it lints (strictly, for every credential
//! method); its values schema refuses a misspelt key or method naming it; the API server
//! accepts what it renders; it renders what the Kustomize base and the Azure overlay do,
//! object by object, so neither can change alone; its CRDs are crds/'s; it sets only
//! variables and flags the binary reads.
//!
//! `helm` comes from `APPATTACH_HELM_BIN` (a directory holding it, as `.ci/run` sets), or
//! else from `tests/helm/build.sh`, which builds it from its Go module on first use and
//! caches it, as the control plane is built.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use appattach_operator::azure::Method;
use appattach_operator::controlplane::Binaries;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{TestNamespace, repo_path, set};

const CHART: &str = "deploy/helm/appattach-operator";
const RELEASE: &str = "appattach-operator";
const BUILD_SCRIPT: &str = "tests/helm/build.sh";

const CLIENT_ID: &str = "11111111-2222-4333-8444-555555555555";
const TENANT_ID: &str = "66666666-7777-4888-9999-000000000000";

/// Each credential method with the values it needs.
const METHODS: &[(&str, &[&str])] = &[
    ("none", &[]),
    (
        "workloadIdentity",
        &[
            "credential.method=workloadIdentity",
            "credential.clientId=11111111-2222-4333-8444-555555555555",
            "azure.tenantId=66666666-7777-4888-9999-000000000000",
        ],
    ),
    (
        "clientSecret",
        &[
            "credential.method=clientSecret",
            "credential.clientId=11111111-2222-4333-8444-555555555555",
            "azure.tenantId=66666666-7777-4888-9999-000000000000",
            "credential.clientSecret.existingSecret=appattach-client-secret",
        ],
    ),
    (
        "managedIdentity",
        &[
            "credential.method=managedIdentity",
            "credential.clientId=11111111-2222-4333-8444-555555555555",
        ],
    ),
];

/// Every other value set, as `--set`/`--set-json`/`--set-string` pairs: one replica without
/// leader election, another image, scheduling, annotations, port, extra args and env.
const EVERY_OPTION: &[(&str, &str)] = &[
    ("--set", "replicas=1"),
    ("--set", "leaderElection.enabled=false"),
    (
        "--set",
        "image.repository=registry.example.com/appattach-operator",
    ),
    ("--set", "image.tag=0.1.1"),
    ("--set", "image.pullPolicy=Always"),
    ("--set-json", r#"imagePullSecrets=[{"name":"registry"}]"#),
    ("--set", r"nodeSelector.kubernetes\.io/os=linux"),
    (
        "--set-json",
        r#"tolerations=[{"key":"dedicated","operator":"Equal","value":"operators","effect":"NoSchedule"}]"#,
    ),
    (
        "--set-json",
        r#"affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/arch","operator":"In","values":["amd64"]}]}]}}}"#,
    ),
    ("--set-string", r"podAnnotations.prometheus\.io/scrape=true"),
    ("--set", "metrics.port=9090"),
    (
        "--set-json",
        r#"extraArgs=["--namespace=avd-apps","--log-format=json"]"#,
    ),
    (
        "--set-json",
        r#"extraEnv=[{"name":"RUST_LOG","value":"appattach_operator=debug"}]"#,
    ),
];

/// The directory holding `helm`: `APPATTACH_HELM_BIN`, or else the one the build script
/// prints (building helm on first use, printing its progress, reusing its cache after).
fn helm_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("APPATTACH_HELM_BIN").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("helm").is_file(),
                "APPATTACH_HELM_BIN={} holds no helm; unset it to build one with bash {BUILD_SCRIPT}",
                dir.display()
            );
            return dir;
        }
        let out = Command::new("bash")
            .arg(repo_path(BUILD_SCRIPT))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running bash {BUILD_SCRIPT}: {e}"));
        assert!(
            out.status.success(),
            "bash {BUILD_SCRIPT} exited with {} (its output above names the failing step)",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(
            dir.join("helm").is_file(),
            "bash {BUILD_SCRIPT} printed {dir:?}, which holds no helm"
        );
        dir
    })
}

/// Runs helm in the repository root, its own settings under the test target's scratch
/// directory (never the user's ~/.config/helm); stdout, or stdout and stderr on failure.
fn helm(args: &[&str]) -> Result<String, String> {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let out = Command::new(helm_dir().join("helm"))
        .args(args)
        .current_dir(repo_path(""))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running helm {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "helm {} ({}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `helm template` of the chart into `namespace`, with these `--set` values.
fn template(namespace: &str, sets: &[&str], crds: bool) -> Result<String, String> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", namespace];
    if crds {
        args.push("--include-crds");
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

/// `kubectl kustomize DIR` (no API server needed).
/// `kubectl apply --server-side --dry-run=server` of `yaml`: what the API server would make
/// of it, without keeping it. Cluster-scoped objects (CRDs, ClusterRole) also come from
/// other tests, hence `--force-conflicts`.
fn dry_run(
    ns: &TestNamespace,
    yaml: &str,
) -> Result<String, appattach_operator::controlplane::Error> {
    ns.cp.kubectl_with_input(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
        Some(yaml),
    )
}

fn kustomize(dir: &str) -> String {
    let binaries = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(binaries.kubectl())
        .args(["kustomize", repo_path(dir).to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The objects of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{e}:\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The objects by "Kind/name".
fn by_name(objects: Vec<Value>) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for o in objects {
        let key = format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(all.insert(key.clone(), o).is_none(), "{key} twice");
    }
    all
}

fn one<'a>(objects: &'a BTreeMap<String, Value>, key: &str) -> &'a Value {
    objects
        .get(key)
        .unwrap_or_else(|| panic!("no {key} among {:?}", objects.keys()))
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The container's environment as name → value (a secret reference as "secret:NAME/KEY",
/// a field reference as "field:PATH").
fn env_of(deployment: &Value) -> BTreeMap<String, String> {
    let env = container(deployment)["env"].as_array().cloned();
    env.unwrap_or_default()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let from = &e["valueFrom"];
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if from["secretKeyRef"].is_object() {
                format!(
                    "secret:{}/{}",
                    from["secretKeyRef"]["name"].as_str().unwrap(),
                    from["secretKeyRef"]["key"].as_str().unwrap()
                )
            } else {
                format!(
                    "field:{}",
                    from["fieldRef"]["fieldPath"].as_str().unwrap_or("?")
                )
            };
            (name, value)
        })
        .collect()
}

/// Removes from a rendered object what only the chart adds, each named: Helm's labels,
/// the ConfigMap checksum that rolls the pods on a settings change, and the pull policy
/// the API server defaults a tagged image to anyway. Empty label and annotation maps go.
fn strip_chart_only(object: &mut Value) {
    const HELM_LABELS: [&str; 4] = [
        "helm.sh/chart",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
    ];
    fn drop_empty(meta: &mut Value, field: &str) {
        if meta[field].as_object().is_some_and(|m| m.is_empty()) {
            meta.as_object_mut().unwrap().remove(field);
        }
    }
    let meta = &mut object["metadata"];
    if let Some(labels) = meta["labels"].as_object_mut() {
        for l in HELM_LABELS {
            labels.remove(l);
        }
    }
    drop_empty(meta, "labels");
    drop_empty(meta, "annotations");
    if object["kind"] == "Deployment" {
        let pod = &mut object["spec"]["template"];
        if let Some(annotations) = pod["metadata"]["annotations"].as_object_mut() {
            annotations.remove("checksum/config");
        }
        drop_empty(&mut pod["metadata"], "annotations");
        for c in pod["spec"]["containers"].as_array_mut().unwrap() {
            let image = c["image"].as_str().unwrap_or_default();
            let tagged = image.rsplit_once(':').is_some_and(|(_, t)| t != "latest");
            if tagged && c["imagePullPolicy"] == "IfNotPresent" {
                c.as_object_mut().unwrap().remove("imagePullPolicy");
            }
        }
    }
}

/// Where two JSON values differ, one line each: the path, then both values.
fn differences(left: &Value, right: &Value, path: &str, out: &mut Vec<String>) {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let keys: std::collections::BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for k in keys {
                let null = Value::Null;
                let (lv, rv) = (l.get(k).unwrap_or(&null), r.get(k).unwrap_or(&null));
                differences(lv, rv, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(l), Value::Array(r)) => {
            for i in 0..l.len().max(r.len()) {
                let item = format!("{path}[{i}]");
                match (l.get(i), r.get(i)) {
                    (Some(lv), Some(rv)) => differences(lv, rv, &item, out),
                    (Some(lv), None) => out.push(format!("{item}: {lv} | (none)")),
                    (None, Some(rv)) => out.push(format!("{item}: (none) | {rv}")),
                    (None, None) => unreachable!(),
                }
            }
        }
        _ if left == right => {}
        _ => out.push(format!("{path}: {left} | {right}")),
    }
}

/// What differs between a Kustomize build (`kustomized`) and the chart's render: objects
/// only one has, and each field of the others. The Namespace (the chart installs into the
/// release's) and the CRDs (the chart's crds/, checked byte for byte by
/// `the_charts_crds_are_a_copy_of_crds`) are left out of the Kustomize side.
fn drift(kustomized: Vec<Value>, rendered: &str) -> Vec<String> {
    let mut base = by_name(kustomized);
    base.retain(|k, _| !k.starts_with("Namespace/") && !k.starts_with("CustomResourceDefinition/"));
    let mut chart = by_name(documents(rendered));
    chart.values_mut().for_each(strip_chart_only);
    let mut out = Vec::new();
    for key in base.keys().filter(|k| !chart.contains_key(*k)) {
        out.push(format!("{key}: only in Kustomize"));
    }
    for key in chart.keys().filter(|k| !base.contains_key(*k)) {
        out.push(format!("{key}: only in the chart"));
    }
    for (key, b) in &base {
        if let Some(c) = chart.get(key) {
            differences(b, c, key, &mut out);
        }
    }
    out
}

fn assert_no_drift(what: &str, kustomized: &str, rendered: &str) {
    let drift = drift(documents(kustomized), rendered);
    assert!(
        drift.is_empty(),
        "{what} and the chart {CHART} differ (path: Kustomize | chart); change the chart's templates with deploy/, or the reverse:\n  {}",
        drift.join("\n  ")
    );
}

#[test]
fn helm_lint_passes_strictly_for_every_credential_method() {
    for (method, sets) in METHODS {
        for strict in [false, true] {
            let mut args = vec!["lint", CHART];
            if strict {
                args.push("--strict");
            }
            for set in *sets {
                args.extend(["--set", set]);
            }
            let out = helm(&args).unwrap_or_else(|e| panic!("credential {method}: {e}"));
            assert!(
                out.contains("1 chart(s) linted, 0 chart(s) failed"),
                "credential {method}, strict {strict}:\n{out}"
            );
        }
    }
}

/// A misspelt key or method, a method without what it needs, or more than one replica
/// without leader election, is refused by values.schema.json at both `helm template` (as
/// at install) and `helm lint`, with a message naming the value.
#[test]
fn the_values_schema_refuses_typos_naming_them() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["credential.method=bogus"],
            &[
                "/credential/method",
                "'none', 'workloadIdentity', 'clientSecret', 'managedIdentity'",
            ],
        ),
        (
            &["replica=3"],
            &["additional properties 'replica' not allowed"],
        ),
        (
            &["azure.clod=AzurePublicCloud"],
            &["/azure", "additional properties 'clod' not allowed"],
        ),
        (
            &["credential.clientSecret.existingSceret=s"],
            &["/credential/clientSecret", "'existingSceret'"],
        ),
        (
            &["azure.cloud=AzureGermanCloud"],
            &["/azure/cloud", "AzureChinaCloud"],
        ),
        (
            &["azure.subscriptionId=my-subscription"],
            &["/azure/subscriptionId"],
        ),
        (
            &["credential.method=workloadIdentity"],
            &["/credential/clientId", "does not match pattern"],
        ),
        (
            &[
                "credential.method=clientSecret",
                "credential.clientId=11111111-2222-4333-8444-555555555555",
            ],
            &["/credential/clientSecret/existingSecret", "/azure/tenantId"],
        ),
        (&["replicas=0"], &["/replicas"]),
        (&["metrics.port=http"], &["/metrics/port", "want integer"]),
        (
            &["leaderElection.enabled=false"],
            &["/replicas", "maximum: got 2, want 1"],
        ),
    ];
    for (sets, fragments) in cases {
        let rendered = template("appattach-system", sets, false);
        let mut args = vec!["lint", CHART];
        for set in *sets {
            args.extend(["--set", set]);
        }
        let linted = helm(&args);
        for (how, result) in [("helm template", rendered), ("helm lint", linted)] {
            let message = match result {
                Ok(out) => panic!("{how} accepted {sets:?}:\n{out}"),
                Err(message) => message,
            };
            for fragment in *fragments {
                assert!(
                    message.contains(fragment),
                    "{how} {sets:?}: the refusal lacks {fragment:?}:\n{message}"
                );
            }
        }
    }
}

/// `helm template --include-crds` into a namespace, for each credential method and with
/// every option set: the API server accepts it all (`kubectl apply --server-side
/// --dry-run=server`), and the method's variables are rendered.
#[tokio::test]
async fn the_api_server_accepts_what_the_chart_renders_for_every_credential_method() {
    let ns = TestNamespace::new("helm-apply").await;
    let mut renders: Vec<(String, String)> = METHODS
        .iter()
        .map(|(method, sets)| {
            let yaml = template(&ns.name, sets, true).unwrap_or_else(|e| panic!("{e}"));
            (method.to_string(), yaml)
        })
        .collect();
    let mut args = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        &ns.name,
        "--include-crds",
    ];
    for (flag, value) in EVERY_OPTION {
        args.extend([*flag, *value]);
    }
    renders.push((
        "every option".into(),
        helm(&args).unwrap_or_else(|e| panic!("{e}")),
    ));

    for (what, yaml) in &renders {
        let out = dry_run(&ns, yaml)
            .unwrap_or_else(|e| panic!("{what}: the API server refused the chart: {e}"));
        let mut expected = vec![
            "customresourcedefinition.apiextensions.k8s.io/appattachpackages.appattach.io",
            "customresourcedefinition.apiextensions.k8s.io/hostpoolassignments.appattach.io",
            "customresourcedefinition.apiextensions.k8s.io/userassignments.appattach.io",
            "customresourcedefinition.apiextensions.k8s.io/backendtargets.appattach.io",
            "serviceaccount/appattach-controller",
            "clusterrole.rbac.authorization.k8s.io/appattach-controller",
            "clusterrolebinding.rbac.authorization.k8s.io/appattach-controller",
            "configmap/appattach-controller",
            "deployment.apps/appattach-controller",
            "service/appattach-controller-metrics",
            "poddisruptionbudget.policy/appattach-controller",
        ];
        if what != "every option" {
            expected.extend([
                "role.rbac.authorization.k8s.io/appattach-leader-election",
                "rolebinding.rbac.authorization.k8s.io/appattach-leader-election",
            ]);
        }
        for text in expected {
            assert!(
                out.contains(text),
                "{what}: the apply lacks {text:?}:\n{out}"
            );
        }

        let objects = by_name(documents(yaml));
        let deployment = one(&objects, "Deployment/appattach-controller");
        assert_eq!(deployment["metadata"]["namespace"], ns.name.as_str());
        let binding = one(&objects, "ClusterRoleBinding/appattach-controller");
        assert_eq!(
            binding["subjects"][0]["namespace"],
            ns.name.as_str(),
            "{what}: the binding names the release's service account"
        );
        let env = env_of(deployment);
        let credential = env.get("APPATTACH_AZURE_CREDENTIAL").map(String::as_str);
        match what.as_str() {
            "none" | "every option" => assert_eq!(credential, None, "{what}: {env:?}"),
            "workloadIdentity" => {
                assert_eq!(credential, Some("workload-identity"));
                // The AKS webhook sets the AZURE_* variables; the chart sets none.
                assert!(!env.keys().any(|k| k.starts_with("AZURE_")), "{env:?}");
            }
            "clientSecret" => {
                assert_eq!(credential, Some("client-secret"));
                assert_eq!(env["AZURE_TENANT_ID"], TENANT_ID);
                assert_eq!(env["AZURE_CLIENT_ID"], CLIENT_ID);
                assert_eq!(
                    env["AZURE_CLIENT_SECRET"],
                    "secret:appattach-client-secret/client-secret"
                );
            }
            "managedIdentity" => {
                assert_eq!(credential, Some("managed-identity"));
                assert_eq!(env["AZURE_CLIENT_ID"], CLIENT_ID);
            }
            other => panic!("{other}"),
        }
    }

    // Every option landed where it belongs.
    let (_, every) = renders.last().unwrap();
    let objects = by_name(documents(every));
    let deployment = one(&objects, "Deployment/appattach-controller");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = container(deployment);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        c["args"],
        json!([
            "controller",
            "--metrics-bind-address=0.0.0.0:9090",
            "--namespace=avd-apps",
            "--log-format=json"
        ]),
        "no --leader-elect without leader election"
    );
    assert_eq!(c["image"], "registry.example.com/appattach-operator:0.1.1");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    assert_eq!(env_of(deployment)["RUST_LOG"], "appattach_operator=debug");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "registry"}]));
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["nodeAffinity"].is_object(), "{pod}");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    let service = one(&objects, "Service/appattach-controller-metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    let pdb = one(&objects, "PodDisruptionBudget/appattach-controller");
    assert_eq!(
        pdb["spec"]["minAvailable"], 0,
        "one replica may go, or a drain never ends"
    );
    assert!(
        !objects.contains_key("Role/appattach-leader-election"),
        "no Lease RBAC without leader election"
    );
}

/// The drift test: the chart with its default values renders every object of `deploy/`
/// (but the Namespace and the CRDs) with the same content: the Deployment whole (image,
/// args, env, probes, resources, security contexts, replicas, selector...), the RBAC rules,
/// the ConfigMap, the Service, the PodDisruptionBudget. Only Helm's labels, the config
/// checksum annotation and the defaulted pull policy are set aside.
#[test]
fn the_chart_renders_what_the_kustomize_base_does() {
    let rendered = template("appattach-system", &[], false).unwrap_or_else(|e| panic!("{e}"));
    assert_no_drift("kubectl kustomize deploy/", &kustomize("deploy"), &rendered);
}

/// The same for AKS workload identity: the chart with credential.method=workloadIdentity and
/// the overlay's client id renders what deploy/overlays/azure does; the service account's
/// annotation (and tenant annotation, with azure.tenantId) and the pod label are there.
#[test]
fn the_chart_with_workload_identity_renders_what_the_azure_overlay_does() {
    let overlay = kustomize("deploy/overlays/azure");
    let objects = by_name(documents(&overlay));
    let sa = one(&objects, "ServiceAccount/appattach-controller");
    let overlay_client = sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
        .as_str()
        .expect("the overlay's client id");
    let sets = [
        "credential.method=workloadIdentity".to_string(),
        format!("credential.clientId={overlay_client}"),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let rendered = template("appattach-system", &sets, false).unwrap_or_else(|e| panic!("{e}"));
    assert_no_drift(
        "kubectl kustomize deploy/overlays/azure",
        &overlay,
        &rendered,
    );

    let (_, sets) = METHODS
        .iter()
        .find(|(m, _)| *m == "workloadIdentity")
        .unwrap();
    let rendered = template("appattach-system", sets, false).unwrap_or_else(|e| panic!("{e}"));
    let objects = by_name(documents(&rendered));
    let sa = &one(&objects, "ServiceAccount/appattach-controller")["metadata"];
    assert_eq!(
        sa["annotations"]["azure.workload.identity/client-id"],
        CLIENT_ID
    );
    assert_eq!(
        sa["annotations"]["azure.workload.identity/tenant-id"],
        TENANT_ID
    );
    let deployment = one(&objects, "Deployment/appattach-controller");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"], "true",
        "AKS injects the token into pods with this label"
    );
    // Without workload identity, neither.
    let rendered = template("appattach-system", &[], false).unwrap();
    assert!(!rendered.contains("azure.workload.identity"), "{rendered}");
}

/// The drift check itself catches a change to deploy/base alone: a verb of the ClusterRole,
/// a memory limit, a probe period, an env variable, the PodDisruptionBudget, the Service's
/// port, a setting, an object removed: each is reported, naming the object and field.
#[test]
fn the_drift_check_reports_a_change_to_the_base_alone() {
    let base = documents(&kustomize("deploy"));
    let rendered = template("appattach-system", &[], false).unwrap();
    // Any drift there is already is the_chart_renders_what_the_kustomize_base_does's to
    // report; here each edit must add its own line.
    let before = drift(base.clone(), &rendered);
    let container = "/spec/template/spec/containers/0";
    let edits: &[(&str, &str, Value, &str)] = &[
        (
            "ClusterRole/appattach-controller",
            "/rules/2/verbs",
            json!(["update", "delete"]),
            ".rules[2].verbs",
        ),
        (
            "Deployment/appattach-controller",
            &format!("{container}/resources/limits/memory"),
            json!("512Mi"),
            ".spec.template.spec.containers[0].resources.limits.memory",
        ),
        (
            "Deployment/appattach-controller",
            &format!("{container}/livenessProbe/periodSeconds"),
            json!(30),
            ".spec.template.spec.containers[0].livenessProbe.periodSeconds",
        ),
        (
            "Deployment/appattach-controller",
            &format!("{container}/env/1/valueFrom/fieldRef/fieldPath"),
            json!("metadata.uid"),
            ".spec.template.spec.containers[0].env[1].valueFrom.fieldRef.fieldPath",
        ),
        (
            "Deployment/appattach-controller",
            &format!("{container}/securityContext/readOnlyRootFilesystem"),
            json!(false),
            ".spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem",
        ),
        (
            "PodDisruptionBudget/appattach-controller",
            "/spec/maxUnavailable",
            json!(1),
            ".spec.maxUnavailable",
        ),
        (
            "Service/appattach-controller-metrics",
            "/spec/ports/0/port",
            json!(8081),
            ".spec.ports[0].port",
        ),
        (
            "ConfigMap/appattach-controller",
            "/data/APPATTACH_RESOURCE_GROUP",
            json!("rg-other"),
            ".data.APPATTACH_RESOURCE_GROUP",
        ),
        (
            "Role/appattach-leader-election",
            "/metadata/name",
            json!("appattach-leader-elect"),
            ": only in",
        ),
    ];
    for (object, pointer, value, field) in edits {
        let mut found = false;
        let edited: Vec<Value> = base
            .iter()
            .map(|o| {
                let key = format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                );
                if key == *object {
                    found = true;
                    set(o.clone(), pointer, value.clone())
                } else {
                    o.clone()
                }
            })
            .collect();
        assert!(found, "no {object} in deploy/");
        let reported = format!("{object}{field}");
        let drift = drift(edited, &rendered);
        assert!(
            drift
                .iter()
                .any(|d| d.starts_with(&reported) && !before.contains(d)),
            "{object} {pointer} = {value} in the base alone went unreported (wanted {reported:?}): {drift:?}"
        );
    }
}

/// Helm reads no file outside the chart, so the chart keeps a copy of crds/; it must be the
/// same bytes (`.ci/run` checks it too).
#[test]
fn the_charts_crds_are_a_copy_of_crds() {
    let crds = std::fs::read(repo_path("crds/appattach.io.yaml")).unwrap();
    let copy = std::fs::read(repo_path(&format!("{CHART}/crds/appattach.io.yaml"))).unwrap();
    assert!(
        crds == copy,
        "{CHART}/crds/appattach.io.yaml differs from crds/appattach.io.yaml; copy it: \
         cp crds/appattach.io.yaml {CHART}/crds/appattach.io.yaml"
    );
}

/// Every variable the chart sets for the controller, and every flag, is one the binary
/// reads (`appattach controller --help`); the AZURE_* variables of each credential method
/// (with, for workload identity, those the AKS webhook adds) make the binary's own
/// credential parser choose that method.
#[test]
fn the_chart_sets_only_variables_and_flags_the_binary_reads() {
    let help = Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["controller", "--help"])
        .output()
        .expect("running appattach controller --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let reads_env = |name: &str| {
        help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]"))
    };
    for (method, sets) in METHODS {
        let rendered = template("appattach-system", sets, false).unwrap();
        let objects = by_name(documents(&rendered));
        let deployment = one(&objects, "Deployment/appattach-controller");
        let config = one(&objects, "ConfigMap/appattach-controller");
        let env = env_of(deployment);
        let configured = config["data"].as_object().unwrap().keys();
        for name in env.keys().chain(configured) {
            if !name.starts_with("AZURE_") {
                assert!(
                    reads_env(name),
                    "{method}: the chart sets {name}, which `appattach controller` does not read"
                );
            }
        }
        for arg in container(deployment)["args"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
        {
            let flag = arg.as_str().unwrap().split('=').next().unwrap();
            assert!(
                help.split_whitespace().any(|w| w == flag),
                "{method}: the chart passes {flag}, which `appattach controller` does not take"
            );
        }

        let mut azure: appattach_operator::azure::Env = env
            .iter()
            .filter(|(k, _)| k.starts_with("AZURE_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if *method == "workloadIdentity" {
            for (k, v) in [
                ("AZURE_TENANT_ID", TENANT_ID),
                ("AZURE_CLIENT_ID", CLIENT_ID),
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    "/var/run/secrets/azure/tokens/azure-identity-token",
                ),
            ] {
                azure.insert(k.into(), v.into());
            }
        }
        let kind = env
            .get("APPATTACH_AZURE_CREDENTIAL")
            .map_or("auto", String::as_str);
        let chosen = Method::from_env(kind, &azure)
            .unwrap_or_else(|e| panic!("{method}: the binary refuses the chart's variables: {e}"));
        let fits = match (*method, &chosen) {
            ("none", Method::ManagedIdentity { client_id: None }) => true,
            ("workloadIdentity", Method::WorkloadIdentity { client_id, .. }) => {
                client_id == CLIENT_ID
            }
            (
                "clientSecret",
                Method::ClientSecret {
                    tenant_id,
                    client_id,
                    ..
                },
            ) => tenant_id == TENANT_ID && client_id == CLIENT_ID,
            ("managedIdentity", Method::ManagedIdentity { client_id }) => {
                client_id.as_deref() == Some(CLIENT_ID)
            }
            _ => false,
        };
        assert!(fits, "{method}: the binary chose {chosen:?}");
    }
}

/// The README's `helm install` commands (with its shell variables given example values),
/// run as `helm template`, pass the schema and render.
#[test]
fn the_readme_helm_install_commands_render() {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let variables = [
        ("$SUB", "00000000-0000-0000-0000-000000000000"),
        ("$RG", "rg-avd"),
        ("$CLIENT_ID", CLIENT_ID),
        ("$APP_ID", CLIENT_ID),
        ("$TENANT_ID", TENANT_ID),
    ];
    let mut commands = Vec::new();
    let mut lines = readme.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if !line.starts_with(&format!("helm install {RELEASE} {CHART} ")) {
            continue;
        }
        // With the lines it continues onto.
        let mut command = line.to_string();
        while command.ends_with('\\') {
            command.pop();
            command.push_str(lines.next().unwrap_or_default());
        }
        commands.push(command);
    }
    assert!(
        commands.len() >= 2,
        "README.md gives fewer `helm install {RELEASE} {CHART}` commands than the two it had"
    );
    for command in commands {
        let mut args = vec!["template".to_string()];
        for word in command.split_whitespace().skip(2) {
            let mut word = word.to_string();
            for (variable, value) in variables {
                word = word.replace(variable, value);
            }
            assert!(
                !word.contains('$'),
                "README.md's `{command}`: what is {word}?"
            );
            args.push(word);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        helm(&args).unwrap_or_else(|e| panic!("README.md's `{command}`: {e}"));
    }
}

/// Values `backendTargets`: the flags they set, and the BackendTargets (with the service
/// account of a WorkloadIdentity one) they create, which the API server accepts; a target
/// with a misspelt method is refused by the schema.
#[tokio::test]
async fn the_chart_creates_backend_targets_and_sets_their_flags() {
    let ns = TestNamespace::new("helm-targets").await;
    let items = serde_json::json!([
        {"namespace": ns.name, "tenantId": "11111111-1111-4111-8111-111111111111",
         "subscriptionId": "22222222-2222-4222-8222-222222222222", "resourceGroup": "rg-a",
         "credential": {"method": "WorkloadIdentity", "clientId": "33333333-3333-4333-8333-333333333333"}},
        {"namespace": ns.name, "name": "pilot", "tenantId": "11111111-1111-4111-8111-111111111111",
         "subscriptionId": "22222222-2222-4222-8222-222222222222", "resourceGroup": "rg-b",
         "credential": {"method": "ClientSecret", "clientId": "33333333-3333-4333-8333-333333333333",
                        "clientSecretRef": {"name": "avd"}}},
    ])
    .to_string();
    let set_items = format!("backendTargets.items={items}");
    let yaml = helm(&[
        "template",
        RELEASE,
        CHART,
        "--namespace",
        &ns.name,
        "--set",
        "backendTargets.required=true",
        "--set",
        "backendTargets.managedIdentityNamespaces={ops,infra}",
        "--set-json",
        &set_items,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let objects = by_name(documents(&yaml));
    let args = container(one(&objects, "Deployment/appattach-controller"))["args"].clone();
    for flag in [
        "--require-backend-target",
        "--managed-identity-namespaces=ops,infra",
    ] {
        assert!(
            args.as_array().unwrap().iter().any(|a| a == flag),
            "{flag} not in {args}"
        );
    }
    let out =
        dry_run(&ns, &yaml).unwrap_or_else(|e| panic!("the API server refused the chart: {e}"));
    for text in [
        "backendtarget.appattach.io/default",
        "backendtarget.appattach.io/pilot",
        "serviceaccount/appattach-workload",
    ] {
        assert!(out.contains(text), "{text} not applied:\n{out}");
    }
    let bad = format!(
        "backendTargets.items={}",
        items.replace("WorkloadIdentity", "WorkloadIdentiy")
    );
    let refused = helm(&["template", RELEASE, CHART, "--set-json", &bad]).unwrap_err();
    assert!(refused.contains("method"), "{refused}");
}

/// `trustedRoots.certificates` makes the ConfigMap of the roots the session hosts trust,
/// which reads back as the certificates given, and points the controller at it; the API
/// server takes what is rendered. Without it, neither is rendered.
#[tokio::test]
async fn the_chart_declares_the_trusted_roots_and_points_the_controller_at_them() {
    let ns = TestNamespace::new("helm-trust").await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Contoso Root");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root = params.self_signed(&key).unwrap();
    let pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pem.path(), root.pem()).unwrap();
    let file = format!("trustedRoots.certificates={}", pem.path().display());
    let yaml = helm(&[
        "template",
        RELEASE,
        CHART,
        "--namespace",
        &ns.name,
        "--set-file",
        &file,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let objects = by_name(documents(&yaml));
    let roots: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(one(&objects, "ConfigMap/appattach-trusted-roots").clone()).unwrap();
    let read = appattach_operator::controller::trust::roots_of(&roots).unwrap();
    let names: Vec<String> = read.names().map(|n| n.subject.clone()).collect();
    assert_eq!(names, ["CN=Contoso Root"]);
    let env = &one(&objects, "ConfigMap/appattach-controller")["data"];
    assert_eq!(
        env["APPATTACH_TRUSTED_ROOTS"],
        format!("{}/appattach-trusted-roots", ns.name)
    );
    let out =
        dry_run(&ns, &yaml).unwrap_or_else(|e| panic!("the API server refused the chart: {e}"));
    assert!(out.contains("configmap/appattach-trusted-roots"), "{out}");
    // Not asked for: no ConfigMap, no flag.
    let plain = by_name(documents(&template(&ns.name, &[], false).unwrap()));
    let env = &one(&plain, "ConfigMap/appattach-controller")["data"];
    assert!(env.get("APPATTACH_TRUSTED_ROOTS").is_none(), "{env}");
    assert!(!plain.contains_key("ConfigMap/appattach-trusted-roots"));
}
