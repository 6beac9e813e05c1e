//! The CRDs from `crds/` install and become Established, with the names users type.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

use crate::support::control_plane;

#[tokio::test]
async fn crds_install_and_become_established() {
    let cp = control_plane().await;
    let crds: Api<CustomResourceDefinition> = Api::all(cp.client().await.unwrap());
    for (name, kind, short) in [
        ("appattachpackages.appattach.io", "AppAttachPackage", "aap"),
        (
            "hostpoolassignments.appattach.io",
            "HostPoolAssignment",
            "aapool",
        ),
        ("userassignments.appattach.io", "UserAssignment", "aauser"),
    ] {
        let crd = crds
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established: {:?}", crd.status);
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["appattach".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name} has no status subresource"
        );
    }
}
