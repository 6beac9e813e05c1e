//! Conditions and status writes: server-side apply, one field manager, and only when
//! something changed (a steady state patches nothing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MANAGER;

/// A condition to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    /// Condition type.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// What it means and what to do.
    pub message: String,
}

impl Cond {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "True",
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    /// A condition whose state is not known yet.
    pub fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "Unknown",
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "False",
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// The conditions `wanted`, keeping each one's lastTransitionTime when its status did not
/// change, so that an unchanged state compares equal and is not written again.
pub fn conditions(
    previous: &[Condition],
    wanted: &[Cond],
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let old = previous.iter().find(|c| c.type_ == w.type_);
            let since = match old {
                Some(o) if o.status == w.status => o.last_transition_time.clone(),
                _ => Time(now.round(jiff::Unit::Second).unwrap_or(now)),
            };
            Condition {
                type_: w.type_.to_string(),
                status: w.status.to_string(),
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// The condition of this type, if set.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Patches `status` of an object by server-side apply, unless it already equals `current`.
/// Returns whether it wrote.
pub async fn write<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    status: &S,
) -> kube::Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    apply(api, name, status).await
}

/// A digest of a status: equal for equal statuses, within one process (it is never stored
/// outside memory).
pub fn digest<S: Serialize>(status: &S) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // A status always serializes.
    serde_json::to_vec(status).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Patches `status` of an object by server-side apply, unless its digest is `current`'s
/// (the digest of the status the cache last saw). Returns whether it wrote.
pub async fn write_unless_digest<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<u64>,
    status: &S,
) -> kube::Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    if current == Some(digest(status)) {
        return Ok(false);
    }
    apply(api, name, status).await
}

async fn apply<K, S>(api: &Api<K>, name: &str, status: &S) -> kube::Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}
