//! `appattach validate`: every manifest checked as the cluster would check it, before
//! merge. First what the API server decides (the CRD schema, defaults and CEL rules, in
//! its own words), then what the controller decides (references between the objects, the
//! backend names, certificates, and, against a world, the host pools and the directory),
//! each problem at its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use serde_json::Value;

use super::apiserver;
use super::manifest::{Document, ReadError};
use crate::backend::Backend;
use crate::controller::Assignment;
use crate::controller::observe::TrustView;
use crate::controller::observe::{self, Inputs, Observation};
use crate::controller::validate::{Finding, Severity};
use crate::domain::naming;
use crate::resources::{
    AppAttachPackage, BackendTarget, GROUP, HostPoolAssignment, UserAssignment, VERSION,
};

/// The kinds of appattach.io.
const KINDS: [&str; 4] = [
    "AppAttachPackage",
    "HostPoolAssignment",
    "UserAssignment",
    "BackendTarget",
];

/// One problem, at its place in the manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (`<stdin>` for standard input).
    pub file: String,
    /// The line (1-based; 0 when the whole file is meant).
    pub line: usize,
    /// `Kind/name` of the object, when the problem is in one.
    pub object: Option<String>,
    /// Error (the object is refused or not reconciled), Warning, or Info (what could not
    /// be checked).
    pub severity: Severity,
    /// `field: message`, as the API server or the controller words it.
    pub text: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        match self.severity {
            Severity::Warning => f.write_str("warning: ")?,
            Severity::Info => f.write_str("note: ")?,
            Severity::Error => {}
        }
        f.write_str(&self.text)
    }
}

/// A document that is not an appattach.io object, and so not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where.
    pub file: String,
    /// Its line.
    pub line: usize,
    /// `Kind/name`, or what it is.
    pub what: String,
}

/// One object of the manifests, parsed.
#[derive(Debug, Clone)]
pub struct Located<K> {
    /// The object, its namespace set.
    pub object: Arc<K>,
    /// The document it came from.
    pub doc: Arc<Document>,
}

/// The objects of the manifests that passed the API server's checks.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// AppAttachPackages.
    pub packages: Vec<Located<AppAttachPackage>>,
    /// HostPoolAssignments.
    pub host_pool_assignments: Vec<Located<HostPoolAssignment>>,
    /// UserAssignments.
    pub user_assignments: Vec<Located<UserAssignment>>,
    /// BackendTargets: checked by their schema and rules alone (what they lead to, an
    /// identity and a subscription, is the controller's to find out).
    pub backend_targets: Vec<Located<BackendTarget>>,
    /// The roots the session hosts trust, when declared (`--trust`, or the ConfigMap of
    /// trusted roots in the manifests).
    pub trust: Option<Arc<TrustView>>,
    /// Every AppAttachPackage the manifests declare (namespace, name), refused or not: an
    /// assignment of a refused package is not also reported as pointing nowhere.
    pub declared_packages: BTreeSet<(String, String)>,
}

impl Objects {
    /// What a pass over `pkg` would look at, from the manifests.
    pub fn inputs(&self, pkg: &AppAttachPackage) -> Inputs {
        let (_, full) = crate::controller::build::identity(&pkg.spec);
        Inputs {
            host_pool_assignments: pointing_at(&self.host_pool_assignments, pkg),
            user_assignments: pointing_at(&self.user_assignments, pkg),
            same_full_name: self
                .packages
                .iter()
                .filter(|p| crate::controller::build::identity(&p.object.spec).1 == full)
                .map(|p| {
                    let hpas = pointing_at(&self.host_pool_assignments, &p.object);
                    (p.object.clone(), hpas)
                })
                .collect(),
            trust: self.trust.clone(),
        }
    }
}

/// The assignments of `list` that point at `pkg`.
fn pointing_at<A: Assignment>(list: &[Located<A>], pkg: &AppAttachPackage) -> Vec<Arc<A>> {
    list.iter()
        .filter(|a| {
            a.object.meta().namespace == pkg.metadata.namespace
                && a.object.package_ref() == pkg.name_any()
        })
        .map(|a| a.object.clone())
        .collect()
}

/// What the controller would find for one package.
pub struct PackageCheck {
    /// The package.
    pub package: Located<AppAttachPackage>,
    /// What a pass over it would observe (against a backend).
    pub observed: Option<Observation>,
    /// The controller's findings, errors first.
    pub findings: Vec<Finding>,
}

/// Everything validation found.
pub struct Report {
    /// The objects that passed the API server's checks.
    pub objects: Objects,
    /// Per package, the controller's view.
    pub packages: Vec<PackageCheck>,
    /// Every problem, in file and line order.
    pub problems: Vec<Problem>,
    /// Documents that are not ours.
    pub skipped: Vec<Skipped>,
    /// Documents read.
    pub documents: usize,
    /// The picture of the backend the checks were made on (when there was a backend).
    pub picture: Option<crate::backend::snapshot::Picture>,
}

impl Report {
    /// Whether anything would be refused or not reconciled.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// The first pass: what the API server would decide of each document (`base`: the
/// manifests as they stand now, for the rules on changes), and the objects it accepts.
pub fn admit(
    docs: Vec<Document>,
    read_errors: Vec<ReadError>,
    namespace: &str,
    base: &[Document],
) -> (Objects, Vec<Problem>, Vec<Skipped>) {
    let mut problems: Vec<Problem> = read_errors
        .into_iter()
        .map(|e| Problem {
            file: e.file,
            line: e.line,
            object: None,
            severity: Severity::Error,
            text: e.message,
        })
        .collect();
    let mut skipped = Vec::new();
    let mut objects = Objects::default();
    let key = |v: &Value| -> (String, String, String) {
        (
            v["kind"].as_str().unwrap_or_default().to_string(),
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or(namespace)
                .to_string(),
            v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let old: BTreeMap<(String, String, String), &Value> = base
        .iter()
        .filter_map(|d| d.value.as_ref())
        .filter(|v| v["apiVersion"] == format!("{GROUP}/{VERSION}"))
        .map(|v| (key(v), v))
        .collect();
    let mut seen: BTreeMap<(String, String, String), (String, usize)> = BTreeMap::new();
    for doc in docs {
        let Some(value) = doc.value.clone() else {
            continue;
        };
        let doc = Arc::new(doc);
        let problem = |field: &str, severity: Severity, text: String| Problem {
            file: doc.file.clone(),
            line: doc.line_of(field),
            object: Some(doc.object()),
            severity,
            text,
        };
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let kind = value.get("kind").and_then(Value::as_str);
        let (group, version) = match api_version.map(|a| a.split_once('/')) {
            Some(Some((g, v))) => (g, v),
            Some(None) => ("", api_version.unwrap_or_default()),
            None => ("", ""),
        };
        match (api_version, kind) {
            (None, None) => {
                skipped.push(Skipped {
                    file: doc.file.clone(),
                    line: doc.line,
                    what: "not a Kubernetes object (no apiVersion, no kind)".into(),
                });
                continue;
            }
            (None, Some(_)) | (Some(_), None) => {
                let missing = if api_version.is_none() {
                    "apiVersion"
                } else {
                    "kind"
                };
                problems.push(problem(
                    "",
                    Severity::Error,
                    format!(
                        "{missing}: Required value: every Kubernetes object names its {missing}"
                    ),
                ));
                continue;
            }
            (Some(_), Some(kind)) if group == GROUP || KINDS.contains(&kind) => {
                if group != GROUP || version != VERSION {
                    problems.push(problem(
                        "apiVersion",
                        Severity::Error,
                        format!(
                            "apiVersion: Unsupported value: {:?}: {kind} is served as {GROUP}/{VERSION}",
                            api_version.unwrap_or_default()
                        ),
                    ));
                    continue;
                }
                if !KINDS.contains(&kind) {
                    problems.push(problem(
                        "kind",
                        Severity::Error,
                        format!(
                            "kind: Unsupported value: {kind:?}: {GROUP}/{VERSION} serves {}",
                            KINDS.join(", ")
                        ),
                    ));
                    continue;
                }
            }
            (Some("v1"), Some("ConfigMap"))
                if value["metadata"]["name"] == crate::controller::trust::CONFIGMAP =>
            {
                let (view, unreadable) = trusted_roots(&value, namespace, &doc);
                problems.extend(unreadable.map(|e| problem("data", Severity::Error, e)));
                objects.trust = Some(Arc::new(view));
                continue;
            }
            (Some(a), Some(kind)) => {
                let what = match value["metadata"]["name"].as_str() {
                    Some(name) => format!("{kind}/{name}"),
                    None => kind.to_string(),
                };
                skipped.push(Skipped {
                    file: doc.file.clone(),
                    line: doc.line,
                    what: format!("{what} ({a}): not an {GROUP} object"),
                });
                continue;
            }
        }
        let k = key(&value);
        if let Some((file, line)) = seen.get(&k) {
            problems.push(problem(
                "metadata.name",
                Severity::Error,
                format!(
                    "metadata.name: Duplicate value: {:?}: {} {}/{} is also declared at {file}:{line}; the later would replace the earlier",
                    k.2, k.0, k.1, k.2
                ),
            ));
            continue;
        }
        seen.insert(k.clone(), (doc.file.clone(), doc.line));
        if k.0 == "AppAttachPackage" {
            objects.declared_packages.insert((k.1.clone(), k.2.clone()));
        }
        let refusals = apiserver::check(&value, old.get(&k).copied());
        if !refusals.is_empty() {
            for r in refusals {
                problems.push(problem(&r.field, Severity::Error, r.to_string()));
            }
            continue;
        }
        let mut value = value;
        value["metadata"]["namespace"] = Value::String(k.1.clone());
        let parsed = match k.0.as_str() {
            "AppAttachPackage" => serde_json::from_value(value).map(|o| {
                objects.packages.push(Located {
                    object: Arc::new(o),
                    doc: doc.clone(),
                })
            }),
            "HostPoolAssignment" => serde_json::from_value(value).map(|o| {
                objects.host_pool_assignments.push(Located {
                    object: Arc::new(o),
                    doc: doc.clone(),
                })
            }),
            "BackendTarget" => serde_json::from_value(value).map(|o| {
                objects.backend_targets.push(Located {
                    object: Arc::new(o),
                    doc: doc.clone(),
                })
            }),
            _ => serde_json::from_value(value).map(|o| {
                objects.user_assignments.push(Located {
                    object: Arc::new(o),
                    doc: doc.clone(),
                })
            }),
        };
        if let Err(e) = parsed {
            problems.push(problem("", Severity::Error, format!("cannot be read: {e}")));
        }
    }
    (objects, problems, skipped)
}

/// The roots the session hosts trust, read from the ConfigMap `value` as the controller
/// reads it; with the error to report at its line when its certificates cannot be read.
fn trusted_roots(value: &Value, namespace: &str, doc: &Document) -> (TrustView, Option<String>) {
    let ns = value["metadata"]["namespace"].as_str().unwrap_or(namespace);
    let source = format!(
        "ConfigMap {ns}/{} ({}:{})",
        crate::controller::trust::CONFIGMAP,
        doc.file,
        doc.line
    );
    let read = serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(value.clone())
        .map_err(|e| format!("it cannot be read as a ConfigMap: {e}"))
        .and_then(|cm| crate::controller::trust::roots_of(&cm));
    let unreadable = read.as_ref().err().map(|e| format!("{source}: {e}"));
    (TrustView::of(source, read), unreadable)
}

/// The second pass: what the controller would decide of the accepted objects; against a
/// backend (`None`: without one, the checks that need no world).
pub async fn reconcilable<B: Backend>(
    objects: &Objects,
    backend: Option<&B>,
    snapshot: &crate::backend::snapshot::Snapshot,
    now: jiff::Timestamp,
) -> Result<(Vec<PackageCheck>, Vec<Problem>), crate::backend::BackendError> {
    let mut problems = Vec::new();
    let orphans = objects
        .host_pool_assignments
        .iter()
        .map(|a| {
            (
                &a.doc,
                a.object.namespace(),
                &a.object.spec.package_ref.name,
            )
        })
        .chain(objects.user_assignments.iter().map(|a| {
            (
                &a.doc,
                a.object.namespace(),
                &a.object.spec.package_ref.name,
            )
        }));
    for (doc, ns, package) in orphans {
        let ns = ns.unwrap_or_default();
        if !objects
            .declared_packages
            .contains(&(ns.clone(), package.clone()))
        {
            problems.push(Problem {
                file: doc.file.clone(),
                line: doc.line_of("spec.packageRef.name"),
                object: Some(doc.object()),
                severity: Severity::Error,
                text: format!(
                    "spec.packageRef.name: AppAttachPackage {package} is not among the manifests of namespace {ns}; the assignment would be Ready=False [PackageNotFound]"
                ),
            });
        }
    }
    // Two objects that map to one backend name: the second is refused by the controller.
    let mut names: BTreeMap<String, &Located<AppAttachPackage>> = BTreeMap::new();
    for p in &objects.packages {
        let ns = p.object.namespace().unwrap_or_default();
        let backend_name = naming::backend_name(&ns, &p.object.name_any());
        if let Some(first) = names.get(&backend_name) {
            problems.push(Problem {
                file: p.doc.file.clone(),
                line: p.doc.line_of("metadata.name"),
                object: Some(p.doc.object()),
                severity: Severity::Error,
                text: format!(
                    "metadata.name: maps to the backend name {backend_name}, as {}/{} does ({}:{}); rename one of them [BackendNameTaken]",
                    first.object.namespace().unwrap_or_default(),
                    first.object.name_any(),
                    first.doc.file,
                    first.doc.line
                ),
            });
        } else {
            names.insert(backend_name, p);
        }
    }
    let mut checks = Vec::new();
    for p in &objects.packages {
        let pkg = &p.object;
        let inputs = objects.inputs(pkg);
        // A suspended package is read too: `plan` shows what it holds back.
        let mut readable = (**pkg).clone();
        readable.spec.suspend = false;
        let mut observed = observe::observe(
            snapshot,
            backend,
            Arc::new(readable),
            inputs,
            now,
            std::time::Duration::MAX,
        )
        .await?;
        observed.package = pkg.clone();
        // The controller's own check sequence, on what it would observe.
        let mut findings = crate::controller::decide::check(&observed);
        let refused = findings.iter().any(|f| f.severity == Severity::Error);
        if backend.is_some() && !refused {
            let mut writing = observed.clone();
            let mut settled = (*writing.package).clone();
            settled.spec.suspend = false;
            writing.package = Arc::new(settled);
            findings.extend(crate::controller::decide::reach_warnings(&writing));
        }
        for f in &findings {
            problems.push(locate(objects, p, f));
        }
        checks.push(PackageCheck {
            package: p.clone(),
            observed: backend.is_some().then_some(observed),
            findings,
        });
    }
    Ok((checks, problems))
}

/// Where a finding of the controller's belongs: in the assignment its message starts with
/// (`HostPoolAssignment/NAME spec.hostPools[0].name: ...`), else in the package, at the
/// field its message starts with.
fn locate(objects: &Objects, p: &Located<AppAttachPackage>, f: &Finding) -> Problem {
    let suffix = format!(" [{}]", f.reason);
    let ns = p.object.namespace();
    if let Some((object, rest)) = f.message.split_once(' ')
        && let Some((kind, name)) = object.split_once('/')
        && let Some((field, message)) = rest.split_once(": ")
    {
        let doc = match kind {
            "HostPoolAssignment" => objects
                .host_pool_assignments
                .iter()
                .find(|a| a.object.namespace() == ns && a.object.name_any() == name)
                .map(|a| &a.doc),
            "UserAssignment" => objects
                .user_assignments
                .iter()
                .find(|a| a.object.namespace() == ns && a.object.name_any() == name)
                .map(|a| &a.doc),
            _ => None,
        };
        if let Some(doc) = doc {
            return Problem {
                file: doc.file.clone(),
                line: doc.line_of(field),
                object: Some(doc.object()),
                severity: f.severity,
                text: format!("{field}: {message}{suffix}"),
            };
        }
    }
    let field = f
        .message
        .split([' ', ':'])
        .next()
        .filter(|w| w.starts_with("spec."))
        .unwrap_or("");
    Problem {
        file: p.doc.file.clone(),
        line: p.doc.line_of(field),
        object: Some(p.doc.object()),
        severity: f.severity,
        text: format!("{}{suffix}", f.message),
    }
}

/// Validates documents: the API server's checks, then the controller's.
pub async fn validate<B: Backend>(
    docs: Vec<Document>,
    read_errors: Vec<ReadError>,
    namespace: &str,
    base: &[Document],
    backend: Option<&B>,
    now: jiff::Timestamp,
) -> Result<Report, crate::backend::BackendError> {
    let documents = docs.len();
    let (objects, mut problems, skipped) = admit(docs, read_errors, namespace, base);
    let snapshot = crate::backend::snapshot::Snapshot::new();
    if let Some(b) = backend {
        snapshot.refresh(b).await?;
    }
    let (packages, more) = reconcilable(&objects, backend, &snapshot, now).await?;
    problems.extend(more);
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(Report {
        objects,
        packages,
        problems,
        skipped,
        documents,
        picture: backend.map(|_| snapshot.with(Clone::clone)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ArmClient;
    use crate::gitops::manifest::parse;

    const PACKAGE: &str = r#"apiVersion: appattach.io/v1alpha1
kind: AppAttachPackage
metadata:
  name: expenses
spec:
  location: westeurope
  image:
    path: \\fs\apps\Contoso.Expenses_1.0.0.0.vhd
  package:
    type: Msix
    name: Contoso.Expenses
    publisher: CN=Contoso
    version: 1.0.0.0
  certificate:
    subject: CN=Contoso
    expiry: "2020-01-01T00:00:00Z"
"#;

    async fn offline(text: &str) -> Report {
        let (docs, errors) = parse("m.yaml", text);
        validate::<ArmClient>(docs, errors, "apps", &[], None, jiff::Timestamp::now())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_controllers_findings_point_at_the_field_they_name() {
        let report = offline(PACKAGE).await;
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(report.problems.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "m.yaml:8: AppAttachPackage/expenses: warning: spec.image.path is a VHD image"
            ),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("m.yaml:16: AppAttachPackage/expenses: spec.certificate.expiry 2020-01-01T00:00:00Z has passed")
                && lines[1].ends_with("[CertificateExpired]"),
            "{lines:#?}"
        );
        assert!(report.has_errors());
    }

    #[tokio::test]
    async fn an_assignment_of_a_package_not_in_the_manifests_is_reported_at_its_reference() {
        let text = "apiVersion: appattach.io/v1alpha1\nkind: HostPoolAssignment\nmetadata: {name: a}\nspec:\n  packageRef:\n    name: nowhere\n  hostPools: [{name: hp-a}]\n";
        let report = offline(text).await;
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "m.yaml:6: HostPoolAssignment/a: spec.packageRef.name: AppAttachPackage nowhere is not among the manifests of namespace apps; the assignment would be Ready=False [PackageNotFound]"
            ]
        );
    }

    #[tokio::test]
    async fn other_groups_are_skipped_and_mistakes_in_ours_are_reported() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n---\nsubscription: x\n---\napiVersion: appattach.io/v1beta1\nkind: AppAttachPackage\nmetadata: {name: a}\n---\napiVersion: appattach.io/v1alpha1\nkind: Package\nmetadata: {name: b}\n---\nkind: UserAssignment\nmetadata: {name: c}\n";
        let report = offline(text).await;
        assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].starts_with(
            "m.yaml:7: AppAttachPackage/a: apiVersion: Unsupported value: \"appattach.io/v1beta1\""
        ));
        assert!(lines[1].starts_with("m.yaml:12: Package/b: kind: Unsupported value: \"Package\""));
        assert!(lines[2].starts_with("m.yaml:15: UserAssignment/c: apiVersion: Required value"));
    }

    #[tokio::test]
    async fn the_base_manifests_bring_the_rules_on_changes() {
        let (base, _) = parse("main.yaml", PACKAGE);
        let changed = PACKAGE.replace("Expenses_1.0.0.0.vhd", "Expenses_1.0.0.0-fixed.vhd");
        let (docs, errors) = parse("m.yaml", &changed);
        let report =
            validate::<ArmClient>(docs, errors, "apps", &base, None, jiff::Timestamp::now())
                .await
                .unwrap();
        assert!(
            report.problems.iter().any(|p| p.line == 13
                && p.text.starts_with("spec.package.version")
                && p.text.contains("must change when spec.image.path changes")),
            "{:#?}",
            report.problems
        );
        // Without the base, the same manifest is a create: nothing to compare.
        let report = offline(&changed).await;
        assert!(
            !report
                .problems
                .iter()
                .any(|p| p.text.contains("must change")),
            "{:#?}",
            report.problems
        );
    }

    #[tokio::test]
    async fn the_same_object_twice_is_reported_at_the_second() {
        let twice = format!("{PACKAGE}---\n{PACKAGE}");
        let report = offline(&twice).await;
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.line == 21 && p.text.contains("is also declared at m.yaml:1")),
            "{:#?}",
            report.problems
        );
    }

    #[tokio::test]
    async fn against_a_world_windows_server_hosts_warn_and_unreadable_vms_are_noted() {
        use crate::emulator::{Config, Emulator, World};
        let world: World = serde_yaml_ng::from_str(
            r#"
hostPools:
  - {name: hp-server, location: westeurope, identityProvider: EntraID, vmResourceGroup: rg-servers,
     sessionHosts: [{name: s-0, os: WindowsServer2025}]}
  - {name: hp-hidden, location: westeurope, identityProvider: EntraID, vmResourceGroup: rg-hidden,
     sessionHosts: [{name: h-0, os: WindowsServer2025}]}
"#,
        )
        .unwrap();
        let (sub, rg) = (world.subscription.clone(), world.resource_group.clone());
        let served = Emulator::start(Config {
            world: Some(world),
            ..Config::default()
        })
        .await
        .unwrap();
        served
            .emulator
            .lock()
            .faults
            .add(
                serde_json::from_value(serde_json::json!({
                    "pathContains": "/resourceGroups/rg-hidden/providers/Microsoft.Compute/",
                    "status": 403, "code": "AuthorizationFailed", "fraction": 1.0
                }))
                .unwrap(),
            )
            .unwrap();
        let client = ArmClient::new(&served.url(), &sub, &rg, crate::backend::Auth::None);
        let text = format!(
            "{}---\napiVersion: appattach.io/v1alpha1\nkind: HostPoolAssignment\nmetadata: {{name: expenses-pools}}\nspec:\n  packageRef: {{name: expenses}}\n  hostPools: [{{name: hp-server}}, {{name: hp-hidden}}]\n",
            PACKAGE
                .replace(".vhd", ".vhdx")
                .replace("2020-01-01", "2099-01-01")
        );
        let (docs, errors) = parse("m.yaml", &text);
        let report = validate(
            docs,
            errors,
            "apps",
            &[],
            Some(&client),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("m.yaml:23: HostPoolAssignment/expenses-pools: warning: spec.hostPools[0].name: 1 of the 1 session host(s) of host pool hp-server run Windows Server")
                && lines[0].ends_with("[WindowsServerSessionHosts]"),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("m.yaml:23: HostPoolAssignment/expenses-pools: note: spec.hostPools[1].name: whether 1 session host(s) of host pool hp-hidden run Windows Server is not known")
                && lines[1].contains("resource group rg-hidden")
                && lines[1].ends_with("[SessionHostOsUnknown]"),
            "{lines:#?}"
        );
        assert!(!report.has_errors());
    }

    #[tokio::test]
    async fn two_objects_that_map_to_one_backend_name_are_reported() {
        let a = PACKAGE.replace("name: expenses", "name: b-c\n  namespace: a");
        let b = PACKAGE.replace("name: expenses", "name: c\n  namespace: a-b");
        let report = offline(&format!("{a}---\n{b}")).await;
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.text.contains("maps to the backend name a-b-c")),
            "{:#?}",
            report.problems
        );
    }
}
