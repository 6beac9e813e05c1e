//! Checks before merge, for GitOps pipelines: `appattach validate` and `appattach plan`.
//!
//! Nothing here writes to a cluster or to the backend. [`manifest`] reads files, folders
//! and standard input into documents that remember where they came from; [`apiserver`]
//! decides offline what the API server would decide (the CRD schema, defaults and CEL
//! rules, worded as the API server words them); [`validate`] adds the controller's own
//! checks against a world; [`plan`] computes, with the controller's own build step, what
//! applying the manifests would change in the backend and for which users.

pub mod apiserver;
pub mod manifest;
pub mod plan;
pub mod validate;
