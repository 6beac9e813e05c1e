//! The emulator's own controls, outside ARM's paths, under `/_emulator/`: sign-in and
//! sign-out, entitlements, staging on demand, faults, request counts and the write log.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::store::Stored;
use super::{Emulator, Inner, arm_api, faults::FaultRule, now, staging, store::SessionRecord};
use crate::arm::{ArmError, ResourceId, ResourceType};
use crate::domain::entitlements::{self, AppGroup, AppGroupKind, Entitlement, Feature, Package};

/// The routes under `/_emulator/`.
pub fn router(_emulator: Emulator) -> Router<Emulator> {
    Router::new()
        .route("/_emulator/healthz", get(|| async { "ok" }))
        .route("/_emulator/signin", post(sign_in))
        .route("/_emulator/signout", post(sign_out))
        .route("/_emulator/entitlements", get(entitlements_of))
        .route("/_emulator/directory", get(directory))
        .route("/_emulator/sessions", get(sessions))
        .route("/_emulator/stage", post(stage))
        .route("/_emulator/staging", get(staging_view))
        .route(
            "/_emulator/staging-faults",
            post(add_staging_fault).delete(clear_staging_faults),
        )
        .route("/_emulator/power", post(power))
        .route("/_emulator/reports", get(health_reports))
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_emulator/requests", get(requests).delete(reset_requests))
        .route("/_emulator/requests/log", get(request_log))
        .route("/_emulator/writes", get(write_log).delete(clear_write_log))
}

fn fail(e: ArmError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

fn commit(inner: &mut Inner) -> Result<(), Box<Response>> {
    inner.store.commit().map_err(|e| {
        Box::new(fail(ArmError::new(
            500,
            "InternalServerError",
            e.to_string(),
        )))
    })
}

/// Finds a host pool by name or id.
fn host_pool(inner: &Inner, name_or_id: &str) -> Result<ResourceId, ArmError> {
    inner
        .store
        .all(ResourceType::HostPool)
        .map(Stored::resource_id)
        .find(|id| {
            id.leaf().eq_ignore_ascii_case(name_or_id)
                || id.to_string().eq_ignore_ascii_case(name_or_id)
        })
        .ok_or_else(|| ArmError::not_found(format!("host pool '{name_or_id}' was not found")))
}

/// The host pool as the entitlement rule sees it.
fn pool_view(inner: &Inner, pool: &ResourceId) -> entitlements::HostPool {
    let key = pool.key();
    let app_groups = arm_api::app_groups_of(inner, &key)
        .map(|s| AppGroup {
            kind: if s.body["properties"]["applicationGroupType"] == "RemoteApp" {
                AppGroupKind::RemoteApp
            } else {
                AppGroupKind::Desktop
            },
            members: arm_api::users_at(inner, &s.id),
            published_families: inner
                .store
                .list(ResourceType::Application, &format!("{}/", s.id))
                .into_iter()
                .filter_map(|a| {
                    a.body["properties"]["msixPackageFamilyName"]
                        .as_str()
                        .map(str::to_ascii_lowercase)
                })
                .collect(),
        })
        .collect();
    entitlements::HostPool {
        id: pool.to_string(),
        app_groups,
    }
}

/// The packages that reference a host pool, as the entitlement rule sees them.
fn packages_on(inner: &Inner, pool: &ResourceId) -> Vec<Package> {
    let key = pool.key();
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out: Vec<Package> = arm_api::packages_on_pool(inner, &key)
        .map(|s| {
            let image = &s.body["properties"]["image"];
            Package {
                id: s.id.clone(),
                feature: Feature::AppAttach,
                family_name: str_of(&image["packageFamilyName"]),
                version: str_of(&image["version"]),
                image_path: str_of(&image["imagePath"]),
                active: image["isActive"].as_bool() == Some(true),
                host_pools: vec![pool.to_string()],
                principals: arm_api::users_at(inner, &s.id),
            }
        })
        .collect();
    out.extend(
        inner
            .store
            .list(ResourceType::MsixPackage, &format!("{pool}/"))
            .into_iter()
            .map(|s| {
                let p = &s.body["properties"];
                Package {
                    id: s.id.clone(),
                    feature: Feature::MsixAppAttach,
                    family_name: str_of(&p["packageFamilyName"]),
                    version: str_of(&p["version"]),
                    image_path: str_of(&p["imagePath"]),
                    active: p["isActive"].as_bool() == Some(true),
                    host_pools: vec![pool.to_string()],
                    principals: Default::default(),
                }
            }),
    );
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignInRequest {
    /// UPN or object id.
    user: String,
    /// Host pool name or id.
    host_pool: String,
}

/// What a sign-in produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInResult {
    /// ARM id of the user session.
    pub session_id: String,
    /// Name of the session host.
    pub session_host: String,
    /// Packages attached.
    pub packages: Vec<Entitlement>,
}

async fn sign_in(State(em): State<Emulator>, Json(req): Json<SignInRequest>) -> Response {
    let mut inner = em.lock();
    match sign_in_locked(&mut inner, &req) {
        Ok(result) => match commit(&mut inner) {
            Ok(()) => (StatusCode::OK, Json(result)).into_response(),
            Err(r) => *r,
        },
        Err(e) => {
            inner.store.discard();
            fail(e)
        }
    }
}

fn sign_in_locked(inner: &mut Inner, req: &SignInRequest) -> Result<SignInResult, ArmError> {
    let (dir_user, user) = inner.world.user(&req.user).ok_or_else(|| {
        ArmError::not_found(format!("user '{}' is not in the directory", req.user))
    })?;
    let pool = host_pool(inner, &req.host_pool)?;
    let view = pool_view(inner, &pool);
    if !entitlements::can_sign_in(&user, &view) {
        return Err(ArmError::new(
            403,
            "NotAuthorized",
            format!(
                "{} is not a member of any application group of host pool {}",
                dir_user.upn,
                pool.leaf()
            ),
        ));
    }
    let packages = entitlements::entitled(&user, &view, &packages_on(inner, &pool));
    let host = inner
        .store
        .list(ResourceType::SessionHost, &format!("{pool}/"))
        .into_iter()
        .filter(|s| {
            let p = &s.body["properties"];
            p["allowNewSession"].as_bool() != Some(false)
                && !matches!(
                    p["status"].as_str(),
                    Some("Unavailable" | staging::SHUTDOWN)
                )
        })
        .min_by_key(|s| s.body["properties"]["sessions"].as_i64().unwrap_or(0))
        .map(|s| (s.id.clone(), s.body.clone()))
        .ok_or_else(|| {
            ArmError::new(
                409,
                "NoSessionHostAvailable",
                format!("no session host of {} takes new sessions", pool.leaf()),
            )
        })?;
    let (host_id, mut host_body) = host;
    let host_rid = ResourceId::parse(&host_id).expect("stored ids parse");
    let next = inner
        .store
        .meta("next_session_id")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    inner
        .store
        .set_meta("next_session_id", Some(json!(next + 1)));
    let sid = host_rid.child(ResourceType::UserSession, &next.to_string());
    let only_remote_app = view
        .app_groups
        .iter()
        .filter(|g| {
            std::iter::once(&user.object_id)
                .chain(&user.groups)
                .any(|p| g.members.contains(p))
        })
        .all(|g| g.kind == AppGroupKind::RemoteApp);
    let domain_user = format!(
        "CONTOSO\\{}",
        dir_user.upn.split('@').next().unwrap_or_default()
    );
    let body = json!({
        "id": sid.to_string(),
        "name": sid.arm_name(),
        "type": ResourceType::UserSession.arm_type(),
        "properties": {
            "objectId": dir_user.object_id,
            "userPrincipalName": dir_user.upn,
            "applicationType": if only_remote_app { "RemoteApp" } else { "Desktop" },
            "sessionState": "Active",
            "activeDirectoryUserName": domain_user,
            "createTime": now(),
        }
    });
    inner.store.put(&sid, body);
    let sessions = host_body["properties"]["sessions"].as_i64().unwrap_or(0);
    host_body["properties"]["sessions"] = json!(sessions + 1);
    inner.store.put(&host_rid, host_body);
    let record = SessionRecord {
        id: sid.to_string(),
        user: dir_user.upn.clone(),
        packages: packages.clone(),
        messages: Vec::new(),
    };
    inner.store.set_meta(
        &arm_api::session_key(&sid),
        Some(serde_json::to_value(&record).expect("JSON")),
    );
    Ok(SignInResult {
        session_id: sid.to_string(),
        session_host: host_rid.leaf().to_string(),
        packages,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignOutRequest {
    /// ARM id of the user session.
    session_id: String,
}

async fn sign_out(State(em): State<Emulator>, Json(req): Json<SignOutRequest>) -> Response {
    let Some(id) =
        ResourceId::parse(&req.session_id).filter(|i| i.kind == ResourceType::UserSession)
    else {
        return fail(ArmError::invalid(format!(
            "sessionId '{}' is not a user session id",
            req.session_id
        )));
    };
    let mut inner = em.lock();
    if !arm_api::log_off(&mut inner, &id) {
        inner.store.discard();
        return fail(ArmError::not_found(format!(
            "session '{}' was not found",
            req.session_id
        )));
    }
    match commit(&mut inner) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntitlementsQuery {
    user: String,
    host_pool: Option<String>,
}

/// What a user gets on each host pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementsView {
    /// The user's UPN.
    pub user: String,
    /// One row per host pool.
    pub host_pools: Vec<HostPoolEntitlements>,
}

/// What a user gets on one host pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolEntitlements {
    /// Host pool name.
    pub host_pool: String,
    /// Whether the user may sign in to it.
    pub can_sign_in: bool,
    /// Packages attached at sign-in.
    pub packages: Vec<Entitlement>,
}

async fn entitlements_of(
    State(em): State<Emulator>,
    Query(q): Query<EntitlementsQuery>,
) -> Response {
    let inner = em.lock();
    let Some((dir_user, user)) = inner.world.user(&q.user) else {
        return fail(ArmError::not_found(format!(
            "user '{}' is not in the directory",
            q.user
        )));
    };
    let pools: Vec<ResourceId> = match &q.host_pool {
        Some(p) => match host_pool(&inner, p) {
            Ok(id) => vec![id],
            Err(e) => return fail(e),
        },
        None => inner
            .store
            .all(ResourceType::HostPool)
            .map(Stored::resource_id)
            .collect(),
    };
    let host_pools = pools
        .iter()
        .map(|pool| {
            let view = pool_view(&inner, pool);
            HostPoolEntitlements {
                host_pool: pool.leaf().to_string(),
                can_sign_in: entitlements::can_sign_in(&user, &view),
                packages: entitlements::entitled(&user, &view, &packages_on(&inner, pool)),
            }
        })
        .collect();
    Json(EntitlementsView {
        user: dir_user.upn,
        host_pools,
    })
    .into_response()
}

/// Where the world's resources live, and its directory: what Microsoft Graph would tell
/// of users and groups, which ARM does not (`appattach plan` expands groups with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryView {
    /// Subscription id of the world's resources.
    pub subscription: String,
    /// Their resource group.
    pub resource_group: String,
    /// Users and groups.
    pub directory: crate::emulator::world::Directory,
}

async fn directory(State(em): State<Emulator>) -> Response {
    let inner = em.lock();
    Json(DirectoryView {
        subscription: inner.world.subscription.clone(),
        resource_group: inner.world.resource_group.clone(),
        directory: inner.world.directory.clone(),
    })
    .into_response()
}

async fn sessions(State(em): State<Emulator>) -> Response {
    let inner = em.lock();
    let records: Vec<Value> = inner
        .store
        .meta_with_prefix("session/")
        .map(|(_, v)| v.clone())
        .collect();
    Json(json!({ "value": records })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StageQuery {
    host_pool: Option<String>,
}

async fn stage(State(em): State<Emulator>, Query(q): Query<StageQuery>) -> Response {
    let mut inner = em.lock();
    if let Some(p) = &q.host_pool
        && let Err(e) = host_pool(&inner, p)
    {
        return fail(e);
    }
    let summary = staging::stage(&mut inner, q.host_pool.as_deref());
    match commit(&mut inner) {
        Ok(()) => Json(summary).into_response(),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StagingFault {
    /// Session host: its name as in the world file and ARM (`fin-0.contoso.com`),
    /// `hostPool/sessionHost`, its id, or its short host name when unambiguous.
    session_host: String,
    /// What staging reports on it; empty: the host stops reporting at all (as if its
    /// agent hung), until the faults are cleared; null: this host's fault is cleared.
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Power {
    /// Session host, named as for a staging fault.
    session_host: String,
    /// Started (true) or shut down (false).
    running: bool,
}

/// Shuts a session host's VM down (status `Shutdown`: it takes no session, stages
/// nothing and reports nothing), or starts it: it is `Available` and runs its health
/// check at the next staging round, as a host that boots does.
async fn power(State(em): State<Emulator>, Json(p): Json<Power>) -> Response {
    let mut inner = em.lock();
    let id = match staging::fault_target(&inner, &p.session_host) {
        Ok(id) => id,
        Err(e) => return fail(e),
    };
    let Some(mut body) = inner.store.get(&id).map(|s| s.body.clone()) else {
        return fail(ArmError::not_found(format!("session host {id} is gone")));
    };
    let props = &mut body["properties"];
    if p.running {
        if props["status"] == staging::SHUTDOWN {
            props["status"] = json!("Available");
            props["sessionHostHealthCheckResults"] = json!([{
                "healthCheckName": "AppAttachHealthCheck",
                "healthCheckResult": "Unknown",
            }]);
        }
    } else {
        props["status"] = json!(staging::SHUTDOWN);
    }
    inner.store.put(&id, body);
    match commit(&mut inner) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => *r,
    }
}

/// Makes one session host fail to stage every image (say, it cannot reach the share).
async fn add_staging_fault(State(em): State<Emulator>, Json(f): Json<StagingFault>) -> Response {
    let mut inner = em.lock();
    let host = match staging::fault_target(&inner, &f.session_host) {
        Ok(id) => id,
        Err(e) => return fail(e),
    };
    let key = format!("{}{}", staging::FAULT_PREFIX, host.key());
    inner.store.set_meta(&key, f.error.map(Value::String));
    match commit(&mut inner) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => *r,
    }
}

async fn clear_staging_faults(State(em): State<Emulator>) -> Response {
    let mut inner = em.lock();
    let keys: Vec<String> = inner
        .store
        .meta_with_prefix(staging::FAULT_PREFIX)
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        inner.store.set_meta(&k, None);
    }
    match commit(&mut inner) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => *r,
    }
}

async fn health_reports(State(em): State<Emulator>) -> Response {
    Json(json!({ "value": em.lock().reports.reports() })).into_response()
}

async fn staging_view(State(em): State<Emulator>) -> Response {
    let inner = em.lock();
    let hosts: BTreeMap<String, Value> = inner
        .store
        .meta_with_prefix("staging/")
        .map(|(k, v)| (k.trim_start_matches("staging/").to_string(), v.clone()))
        .collect();
    Json(hosts).into_response()
}

async fn list_faults(State(em): State<Emulator>) -> Response {
    Json(em.lock().faults.rules()).into_response()
}

async fn add_fault(State(em): State<Emulator>, Json(rule): Json<FaultRule>) -> Response {
    match em.lock().faults.add(rule) {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => fail(ArmError::invalid(e)),
    }
}

async fn clear_faults(State(em): State<Emulator>) -> Response {
    em.lock().faults.clear();
    StatusCode::OK.into_response()
}

async fn requests(State(em): State<Emulator>) -> Response {
    Json(em.lock().counts.view()).into_response()
}

async fn request_log(State(em): State<Emulator>) -> Response {
    Json(json!({ "value": em.lock().counts.logged() })).into_response()
}

/// The ARM writes applied, oldest first, with their bodies.
async fn write_log(State(em): State<Emulator>) -> Response {
    Json(json!({ "value": em.lock().writes.writes() })).into_response()
}

async fn clear_write_log(State(em): State<Emulator>) -> Response {
    em.lock().writes.clear();
    StatusCode::OK.into_response()
}

async fn reset_requests(State(em): State<Emulator>) -> Response {
    em.lock().counts.reset();
    StatusCode::OK.into_response()
}
