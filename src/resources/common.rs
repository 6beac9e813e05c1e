//! Pieces shared by the three kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A reference to the AppAttachPackage an assignment applies to, in the assignment's
/// own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
pub struct PackageRef {
    /// Name of the AppAttachPackage in the same namespace. Immutable: to assign another
    /// package, create another assignment.
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.packageRef.name is immutable: create a new assignment to assign another package"
    ))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Condition types every kind reports.
pub mod condition {
    /// The backend matches the spec.
    pub const READY: &str = "Ready";
    /// The last reconcile succeeded.
    pub const SYNCED: &str = "Synced";
    /// A rollout is under way.
    pub const PROGRESSING: &str = "Progressing";
}
