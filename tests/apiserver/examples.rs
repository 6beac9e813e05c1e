//! Every manifest in `examples/` applies server-side and reads back unchanged.

use kube::api::DynamicObject;
use serde_json::Value;

use crate::support::{TestNamespace, assert_offline_accepts, assert_subset, repo_path};

/// Files in examples/ that are not AppAttach manifests.
const NOT_MANIFESTS: &[&str] = &["kustomization.yaml", "namespace.yaml", "world.yaml"];

fn example_manifests() -> Vec<(String, Vec<Value>)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_path("examples"))
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !NOT_MANIFESTS.contains(&p.file_name().unwrap().to_str().unwrap()))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = serde_yaml_ng::Deserializer::from_str(&text)
                .map(|d| {
                    let v: Value = serde::Deserialize::deserialize(d).unwrap();
                    v
                })
                .filter(|v| !v.is_null())
                .collect();
            (path.display().to_string(), docs)
        })
        .collect()
}

#[tokio::test]
async fn every_example_applies_server_side_and_reads_back_unchanged() {
    let ns = TestNamespace::new("examples").await;
    let manifests = example_manifests();
    let kinds: Vec<&str> = manifests
        .iter()
        .flat_map(|(_, docs)| docs.iter().map(|d| d["kind"].as_str().unwrap()))
        .collect();
    for kind in ["AppAttachPackage", "HostPoolAssignment", "UserAssignment"] {
        assert!(kinds.contains(&kind), "examples/ has no {kind}");
    }

    for (path, docs) in &manifests {
        for doc in docs {
            assert_eq!(
                doc["apiVersion"], "appattach.io/v1alpha1",
                "{path}: not one of our kinds"
            );
            assert!(
                doc["metadata"].get("namespace").is_none(),
                "{path}: examples leave the namespace to kustomize"
            );
        }
        ns.kubectl(&["apply", "--server-side", "-f", path])
            .unwrap_or_else(|e| panic!("{path} did not apply: {e}"));
    }

    for (path, docs) in &manifests {
        for doc in docs {
            let name = doc["metadata"]["name"].as_str().unwrap();
            let kind = doc["kind"].as_str().unwrap();
            let live: DynamicObject = ns.api(kind).get(name).await.unwrap();
            let live = serde_json::to_value(&live).unwrap();
            assert_subset(
                &doc["spec"],
                &live["spec"],
                &format!("{path}: {kind}/{name} spec"),
            );
            assert_eq!(live["metadata"]["generation"], 1);
        }
        // Applying the same file again changes nothing.
        ns.kubectl(&["apply", "--server-side", "-f", path]).unwrap();
        for doc in docs {
            let name = doc["metadata"]["name"].as_str().unwrap();
            let live = ns
                .api(doc["kind"].as_str().unwrap())
                .get(name)
                .await
                .unwrap();
            assert_eq!(
                live.metadata.generation,
                Some(1),
                "{path}: re-applying {name} changed it"
            );
        }
    }
}

/// `appattach validate` passes every example, on create and as an update of itself, as the
/// API server accepts them.
#[tokio::test]
async fn validate_says_what_the_api_server_says_about_every_example() {
    let ns = TestNamespace::new("examples_offline").await;
    for (path, docs) in example_manifests() {
        assert!(!docs.is_empty(), "{path} holds no manifest");
        for doc in &docs {
            assert_offline_accepts(doc, None);
            let live = ns.applied(doc).await;
            assert_offline_accepts(doc, Some(&live));
        }
    }
}

#[test]
fn kustomization_lists_every_example_manifest() {
    let kustomization = std::fs::read_to_string(repo_path("examples/kustomization.yaml")).unwrap();
    for (path, _) in example_manifests() {
        let file = std::path::Path::new(&path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            kustomization.contains(&format!("- {file}")),
            "examples/kustomization.yaml does not list {file}"
        );
    }
}

/// The Azure examples (`examples/azure/`, not applied by `appattach local`): each of our
/// objects applies server-side (in a test namespace, not the one it names), and
/// `appattach validate` accepts it as the API server does.
#[tokio::test]
async fn the_azure_examples_apply_and_validate() {
    let ns = TestNamespace::new("examples_azure").await;
    let mut ours = 0;
    for entry in std::fs::read_dir(repo_path("examples/azure")).expect("examples/azure exists") {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let mut doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            if doc["apiVersion"] != "appattach.io/v1alpha1" {
                continue;
            }
            doc["metadata"].as_object_mut().unwrap().remove("namespace");
            assert_offline_accepts(&doc, None);
            let live = ns.applied(&doc).await;
            assert_offline_accepts(&doc, Some(&live));
            ours += 1;
        }
    }
    assert!(ours >= 4, "examples/azure holds {ours} of our objects");
}
