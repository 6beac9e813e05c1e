//! The ARM surface: routing, api-version and auth checks, and one handler per operation.
//!
//! Every handler validates the whole request before it changes anything, so a refused
//! request leaves no trace; the caller commits a request's writes in one transaction.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::entra;
use super::ratelimit::{self, Admission};
use super::{Emulator, Inner, World, now, store};
use crate::arm::models::{self, PrincipalType};
use crate::arm::{self, ArmError, ResourceId, ResourceType};
use crate::budget::Kind;

/// A parsed request.
pub struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    query: BTreeMap<String, String>,
    body: &'a [u8],
    base: String,
}

/// A successful answer.
pub enum Reply {
    /// A JSON body.
    Json(StatusCode, Value),
    /// No body.
    Empty(StatusCode),
}

type Result<T> = std::result::Result<T, ArmError>;

/// The fallback handler: every path that is not the emulator's own. With a request
/// budget, a request over it is refused here, before faults and before it is served.
pub async fn handle(
    State(emulator): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let kind = Kind::of(&method);
    let admitted = {
        let mut inner = emulator.lock();
        let admission = inner.budget.as_mut().map(|b| {
            let admission = b.admit(&ratelimit::caller(&headers), kind, Instant::now());
            (admission, b.limits())
        });
        if let Some((Admission::Refused { .. }, _)) = admission {
            inner.counts.record(method.as_str(), &path);
            inner.counts.record_refused(kind);
        }
        admission
    };
    let mut response = match admitted {
        Some((Admission::Refused { retry_after }, limits)) => {
            ratelimit::too_many_requests(kind, limits, retry_after)
        }
        _ => serve(emulator.clone(), method.clone(), uri, headers, body).await,
    };
    let status = response.status().as_u16();
    let hourly = emulator
        .lock()
        .counts
        .log(method.as_str(), &path, status, agent);
    // As ARM does: how many requests of this kind the caller has left (with a budget, the
    // tokens left in its bucket; without, what the emulator counts of an hourly budget).
    match admitted {
        Some((admission, _)) => {
            ratelimit::set_remaining(&mut response, kind, admission.remaining())
        }
        None => {
            let (name, left) = hourly;
            if let (Ok(name), Ok(left)) = (
                axum::http::HeaderName::try_from(name),
                axum::http::HeaderValue::try_from(left.to_string()),
            ) {
                response.headers_mut().insert(name, left);
            }
        }
    }
    response
}

async fn serve(
    emulator: Emulator,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let fault = {
        let mut inner = emulator.lock();
        inner.counts.record(method.as_str(), &path);
        inner.faults.check(method.as_str(), &path)
    };
    let delay_after = fault.as_ref().map_or(0, |f| f.delay_after_ms);
    if let Some(fault) = fault {
        if fault.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(fault.delay_ms)).await;
        }
        if let Some(status) = fault.status {
            if let Some((code, message)) = &fault.error {
                return error_response(&ArmError::new(status, code, message.clone()));
            }
            return fault_response(status, fault.retry_after_seconds);
        }
    }
    let query: BTreeMap<String, String> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let request = Request {
        method: &method,
        path: &path,
        query,
        body: &body,
        base: format!("http://{host}"),
    };

    let principal = entra::principal(&headers);
    let response = {
        let mut inner = emulator.lock();
        if let Err(refused) = check_auth(&inner, &request, &headers) {
            return *refused;
        }
        match dispatch(&mut inner, &request) {
            Ok(reply) => match inner.store.commit() {
                Ok(()) => {
                    let response = match reply {
                        Reply::Json(status, body) => (status, axum::Json(body)).into_response(),
                        Reply::Empty(status) => status.into_response(),
                    };
                    if method != Method::GET {
                        inner.counts.record_applied(method.as_str(), &path);
                        inner.writes.record(
                            method.as_str(),
                            &path,
                            response.status().as_u16(),
                            &body,
                            principal.as_deref(),
                        );
                    }
                    response
                }
                Err(e) => error_response(&ArmError::new(500, "InternalServerError", e.to_string())),
            },
            Err(e) => {
                inner.store.discard();
                error_response(&e)
            }
        }
    };
    if delay_after > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay_after)).await;
    }
    response
}

fn error_response(e: &ArmError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e.body())).into_response()
}

fn fault_response(status: u16, retry_after: Option<u64>) -> Response {
    let (code, message) = match status {
        429 => (
            "TooManyRequests",
            "The request is being throttled (emulated fault).",
        ),
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable (emulated fault).",
        ),
        _ => (
            "InternalServerError",
            "The server had an internal error (emulated fault).",
        ),
    };
    let mut response = error_response(&ArmError::new(status, code, message));
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
    response
}

/// Who may call: with a world `tenantId`, as ARM checks ([`check_caller`]); else the
/// static token, when one is set; else anyone.
fn check_auth(
    inner: &Inner,
    req: &Request,
    headers: &HeaderMap,
) -> std::result::Result<(), Box<Response>> {
    if let Some(tenant) = &inner.world.tenant_id {
        return check_caller(&inner.world, tenant, req, headers, entra::now_seconds()).map_err(
            |(e, challenge)| {
                let mut response = error_response(&e);
                if let Some(value) =
                    challenge.and_then(|c| axum::http::HeaderValue::try_from(c).ok())
                {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                Box::new(response)
            },
        );
    }
    let Some(token) = &inner.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let refused = match given {
        None => ArmError::new(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ),
        Some(h) if h.strip_prefix("Bearer ") == Some(token.as_str()) => return Ok(()),
        Some(_) => ArmError::new(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ),
    };
    Err(Box::new(error_response(&refused)))
}

/// The audiences ARM accepts a token for: its endpoints in the three clouds, and the
/// classic `management.core` ones, with and without the final slash.
const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://management.usgovcloudapi.net",
    "https://management.core.usgovcloudapi.net",
    "https://management.chinacloudapi.cn",
    "https://management.core.chinacloudapi.cn",
];

/// A refusal, with the `WWW-Authenticate` challenge of a 401.
type Refused = (ArmError, Option<String>);

/// ARM's checks of the caller of a subscription trusting `tenant`, at `now` (seconds
/// since the epoch), in ARM's order: a bearer token (401 `AuthenticationFailed`) that
/// reads (401 `InvalidAuthenticationToken`), has not expired (401
/// `ExpiredAuthenticationToken`) and is for ARM (401 `InvalidAuthenticationToken`); the
/// subscription is this one (404 `SubscriptionNotFound`); the token is of its tenant (401
/// `InvalidAuthenticationTokenTenant`); and its principal may act on it (403
/// `AuthorizationFailed`, when the world lists `principals`).
fn check_caller(
    world: &World,
    tenant: &str,
    req: &Request,
    headers: &HeaderMap,
    now: i64,
) -> std::result::Result<(), Refused> {
    let authority = format!("{}/{tenant}", req.base);
    let challenge = |description: &str| {
        Some(format!(
            "Bearer authorization_uri=\"{authority}\", error=\"invalid_token\", error_description=\"{description}\""
        ))
    };
    let header_given = headers.get(header::AUTHORIZATION).is_some();
    let Some(token) = entra::bearer(headers) else {
        let message = if header_given {
            "Authentication failed. The 'Authorization' header is provided in an invalid format."
        } else {
            "Authentication failed. The 'Authorization' header is missing."
        };
        return Err((
            ArmError::new(401, "AuthenticationFailed", message),
            challenge("The authentication failed because of missing 'Authorization' header."),
        ));
    };
    let invalid = |message: String| {
        (
            ArmError::new(401, "InvalidAuthenticationToken", message),
            challenge("The access token is invalid."),
        )
    };
    let claims =
        entra::claims(token).map_err(|e| invalid(format!("The access token is invalid: {e}.")))?;
    let Some(token_tenant) = entra::text(&claims, "tid") else {
        return Err(invalid(
            "The access token is invalid: it has no 'tid' claim.".into(),
        ));
    };
    let Some(oid) = entra::text(&claims, "oid") else {
        return Err(invalid(
            "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal is properly created in the tenant.".into(),
        ));
    };
    match entra::seconds(&claims, "exp") {
        None => {
            return Err(invalid(
                "The access token is invalid: it has no 'exp' claim.".into(),
            ));
        }
        Some(exp) if exp <= now => {
            return Err((
                ArmError::new(
                    401,
                    "ExpiredAuthenticationToken",
                    format!(
                        "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                        entra::rfc3339(exp),
                        entra::rfc3339(now)
                    ),
                ),
                challenge("The access token expiry UTC time is earlier than current UTC time."),
            ));
        }
        Some(_) => {}
    }
    if let Some(nbf) = entra::seconds(&claims, "nbf").filter(|n| *n > now + 300) {
        return Err(invalid(format!(
            "The access token is not valid before '{}'; current UTC time is '{}'.",
            entra::rfc3339(nbf),
            entra::rfc3339(now)
        )));
    }
    let audiences = entra::audiences(&claims);
    if !audiences
        .iter()
        .any(|a| ARM_AUDIENCES.contains(&a.trim_end_matches('/')))
    {
        let allowed: Vec<String> = ARM_AUDIENCES
            .iter()
            .flat_map(|a| [format!("'{a}/'"), format!("'{a}'")])
            .collect();
        return Err(invalid(format!(
            "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences {}.",
            audiences.join(", "),
            allowed.join(",")
        )));
    }
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    if let [first, sub, ..] = segs.as_slice()
        && first.eq_ignore_ascii_case("subscriptions")
        && !sub.eq_ignore_ascii_case(&world.subscription)
    {
        return Err((
            ArmError::new(
                404,
                "SubscriptionNotFound",
                format!("The subscription '{sub}' could not be found."),
            ),
            None,
        ));
    }
    if !token_tenant.eq_ignore_ascii_case(tenant) {
        let issued_by =
            entra::text(&claims, "iss").map_or_else(|| entra::issuer(token_tenant), String::from);
        return Err((
            ArmError::new(
                401,
                "InvalidAuthenticationTokenTenant",
                format!(
                    "The access token is from the wrong issuer '{issued_by}'. It must match the tenant '{}' associated with this subscription. Please use the authority (URL) '{authority}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
                    entra::issuer(tenant)
                ),
            ),
            challenge("The access token is from the wrong issuer."),
        ));
    }
    if !world.allows(oid) {
        let client = entra::text(&claims, "appid")
            .or_else(|| entra::text(&claims, "azp"))
            .unwrap_or(oid);
        return Err((
            ArmError::new(
                403,
                "AuthorizationFailed",
                format!(
                    "The client '{client}' with object id '{oid}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                    action(req.method, req.path),
                    req.path.trim_end_matches('/')
                ),
            ),
            None,
        ));
    }
    Ok(())
}

/// The RBAC action of a request, as ARM names it in `AuthorizationFailed`: the resource
/// provider and types of the path (after its last `providers`), then `read`, `write`,
/// `delete`, or for a POST the action's name and `action`:
/// `Microsoft.DesktopVirtualization/hostPools/read`,
/// `Microsoft.DesktopVirtualization/hostPools/importAppAttachPackageInfo/action`. A path
/// without a provider is `Microsoft.Resources`' (subscriptions, resource groups).
pub fn action(method: &Method, path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, rest) = match segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    {
        Some(i) if i + 1 < segs.len() => (segs[i + 1], &segs[i + 2..]),
        _ => ("Microsoft.Resources", &segs[..]),
    };
    let (types, verb) = if *method == Method::POST && rest.len() % 2 == 1 {
        let (last, types) = rest.split_last().expect("not empty");
        (types, format!("{last}/action"))
    } else {
        let verb = match *method {
            Method::GET | Method::HEAD => "read",
            Method::DELETE => "delete",
            Method::POST => "action",
            _ => "write",
        };
        (rest, verb.to_string())
    };
    let mut out = vec![namespace.to_string()];
    out.extend(types.iter().step_by(2).map(|t| t.to_string()));
    out.push(verb);
    out.join("/")
}

fn check_api_version(req: &Request, supported: &[&str]) -> Result<()> {
    match req.query.get("api-version") {
        None => Err(ArmError::new(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        Some(v) if supported.contains(&v.as_str()) => Ok(()),
        Some(v) => Err(ArmError::new(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                supported.join(",")
            ),
        )),
    }
}

fn dispatch(inner: &mut Inner, req: &Request) -> Result<Reply> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();

    if let Some(i) = lower
        .windows(3)
        .position(|w| w == ["providers", "microsoft.authorization", "roleassignments"])
    {
        check_api_version(req, &[arm::ROLE_ASSIGNMENTS_API_VERSION])?;
        let scope = format!("/{}", segs[..i].join("/"));
        return match &segs[i + 3..] {
            [] => roles_list(inner, req, &scope),
            [name] => roles_item(inner, req, &scope, name),
            _ => Err(no_route(req)),
        };
    }

    if lower.len() >= 7
        && lower[0] == "subscriptions"
        && lower[2] == "resourcegroups"
        && lower[4] == "providers"
        && lower[5] == "microsoft.compute"
    {
        return super::compute::serve(
            &inner.world,
            req.method,
            &segs,
            &req.query,
            &req.base,
            req.path,
        )
        .map(|body| Reply::Json(StatusCode::OK, body));
    }

    let provider = "microsoft.desktopvirtualization";
    if lower.len() >= 7
        && lower[0] == "subscriptions"
        && lower[2] == "resourcegroups"
        && lower[4] == "providers"
        && lower[5] == provider
    {
        check_api_version(req, arm::DESKTOP_VIRTUALIZATION_API_VERSIONS)?;
        return resource_group_scoped(inner, req, segs[1], segs[3], &segs[6..]);
    }
    if lower.len() == 5
        && lower[0] == "subscriptions"
        && lower[2] == "providers"
        && lower[3] == provider
    {
        check_api_version(req, arm::DESKTOP_VIRTUALIZATION_API_VERSIONS)?;
        let kind = ResourceType::from_segments(&[segs[4]]).ok_or_else(|| no_route(req))?;
        if req.method != Method::GET {
            return Err(method_not_allowed(req));
        }
        let prefix = format!("/subscriptions/{}/", segs[1]);
        return list(inner, req, kind, &prefix);
    }
    Err(no_route(req))
}

fn no_route(req: &Request) -> ArmError {
    ArmError::new(
        404,
        "NotFound",
        format!(
            "No operation of the emulated API matches {} {}.",
            req.method, req.path
        ),
    )
}

fn method_not_allowed(req: &Request) -> ArmError {
    ArmError::new(
        405,
        "MethodNotAllowed",
        format!("{} is not supported on {}.", req.method, req.path),
    )
}

fn resource_group_scoped(
    inner: &mut Inner,
    req: &Request,
    sub: &str,
    rg: &str,
    rest: &[&str],
) -> Result<Reply> {
    let segments: Vec<&str> = rest.iter().step_by(2).copied().collect();
    let names: Vec<&str> = rest.iter().skip(1).step_by(2).copied().collect();
    if rest.len().is_multiple_of(2) {
        let kind = ResourceType::from_segments(&segments).ok_or_else(|| no_route(req))?;
        let id = ResourceId::new(sub, rg, kind, &names);
        return match *req.method {
            Method::GET => get(inner, &id).map(|body| Reply::Json(StatusCode::OK, body)),
            Method::PUT => put(inner, req, &id),
            Method::PATCH => patch(inner, req, &id),
            Method::DELETE => delete(inner, req, &id),
            _ => Err(method_not_allowed(req)),
        };
    }
    let (last, collection) = segments.split_last().expect("odd length is at least one");
    // POST .../hostPools/{hp}/importAppAttachPackageInfo
    if last.eq_ignore_ascii_case("importAppAttachPackageInfo")
        && ResourceType::from_segments(collection) == Some(ResourceType::HostPool)
    {
        if *req.method != Method::POST {
            return Err(method_not_allowed(req));
        }
        let pool = ResourceId::new(sub, rg, ResourceType::HostPool, &names);
        return import_package_info(inner, req, &pool);
    }
    // POST .../userSessions/{id}/sendMessage | disconnect
    if ResourceType::from_segments(collection) == Some(ResourceType::UserSession)
        && names.len() == 3
    {
        let id = ResourceId::new(sub, rg, ResourceType::UserSession, &names);
        if *req.method != Method::POST {
            return Err(method_not_allowed(req));
        }
        return match last.to_ascii_lowercase().as_str() {
            "sendmessage" => send_message(inner, req, &id),
            "disconnect" => disconnect(inner, &id),
            _ => Err(no_route(req)),
        };
    }
    if *req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let rg_id = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/{}",
        crate::arm::id::PROVIDER
    );
    // GET hostPools/{hp}/userSessions: every session of the pool.
    if segments.len() == 2
        && segments[0].eq_ignore_ascii_case("hostPools")
        && segments[1].eq_ignore_ascii_case("userSessions")
    {
        let pool = ResourceId::new(sub, rg, ResourceType::HostPool, &names);
        require(inner, &pool)?;
        return list(inner, req, ResourceType::UserSession, &format!("{pool}/"));
    }
    let kind = ResourceType::from_segments(&segments).ok_or_else(|| no_route(req))?;
    let prefix = match kind.parent() {
        None => format!("{rg_id}/{}/", kind.segments()[0]),
        Some(parent_kind) => {
            let parent = ResourceId::new(sub, rg, parent_kind, &names);
            require(inner, &parent)?;
            format!("{parent}/{}/", kind.segments().last().expect("a segment"))
        }
    };
    list(inner, req, kind, &prefix)
}

fn not_found(id: &ResourceId) -> ArmError {
    let kind = id.kind.segments().join("/");
    ArmError::not_found(format!(
        "The Resource 'Microsoft.DesktopVirtualization/{kind}/{}' under resource group '{}' was not found.",
        id.arm_name(),
        id.resource_group
    ))
}

fn require<'a>(inner: &'a Inner, id: &ResourceId) -> Result<&'a store::Stored> {
    inner.store.get(id).ok_or_else(|| {
        let mut e = not_found(id);
        if id.kind == ResourceType::HostPool
            || id.kind == ResourceType::ApplicationGroup
            || id.kind == ResourceType::SessionHost
        {
            e.code = "ParentResourceNotFound".into();
        }
        e
    })
}

/// Parses a body, naming the property that is wrong.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ArmError::new(
            400,
            "InvalidRequestContent",
            "The request content is empty; a JSON body is required.",
        ));
    }
    // Syntax first, so that a wrong type is never reported as broken JSON.
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ArmError::new(
            400,
            "InvalidRequestContent",
            format!("The request content is not valid JSON: {e}."),
        )
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let property = match msg
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(field) if path == "." => field.to_string(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        ArmError::new(
            400,
            "InvalidRequestContent",
            format!("The request content is invalid at property '{property}': {msg}."),
        )
    })
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("models serialize to JSON")
}

fn envelope(
    id: &ResourceId,
    location: Option<&str>,
    tags: Option<&BTreeMap<String, String>>,
    properties: Value,
) -> Value {
    let mut body = json!({
        "id": id.to_string(),
        "name": id.arm_name(),
        "type": id.kind.arm_type(),
    });
    if let Some(l) = location {
        body["location"] = json!(l);
    }
    if let Some(t) = tags {
        body["tags"] = to_value(t);
    }
    body["properties"] = properties;
    body
}

/// The location of a resource `id` names, required, and normalized as ARM stores it;
/// refused, as ARM does, where the resource type is not offered.
fn required_location(location: &Option<String>, id: &ResourceId) -> Result<String> {
    match location.as_deref() {
        Some(l) if !l.trim().is_empty() => arm::location::check_available(l, &id.kind.arm_type()),
        _ => Err(ArmError::new(
            400,
            "LocationRequired",
            "The property 'location' is required: give the Azure region of the resource.",
        )),
    }
}

fn check_name(id: &ResourceId) -> Result<()> {
    let name = id.leaf();
    let ok = match id.kind {
        ResourceType::AppAttachPackage => arm::is_valid_app_attach_package_name(name),
        ResourceType::MsixPackage => {
            (3..=100).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@.-_ ".contains(c))
        }
        _ => {
            (3..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@.-_ ".contains(c))
        }
    };
    if ok {
        return Ok(());
    }
    let rule = match id.kind {
        ResourceType::AppAttachPackage => {
            "app attach package names are 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit"
        }
        ResourceType::MsixPackage => {
            "MSIX package full names are 3 to 100 letters, digits and @ . - _ or space"
        }
        _ => "names are 3 to 64 letters, digits and @ . - _ or space",
    };
    Err(ArmError::new(
        400,
        "InvalidResourceName",
        format!("The resource name '{name}' is invalid: {rule}."),
    ))
}

// ---------------------------------------------------------------- GET

fn get(inner: &Inner, id: &ResourceId) -> Result<Value> {
    let stored = inner.store.get(id).ok_or_else(|| not_found(id))?;
    let mut body = stored.body.clone();
    if id.kind == ResourceType::HostPool {
        let key = id.key();
        let packages: Vec<Value> = packages_on_pool(inner, &key).map(|s| json!(s.id)).collect();
        let groups: Vec<Value> = app_groups_of(inner, &key).map(|s| json!(s.id)).collect();
        body["properties"]["appAttachPackageReferences"] = Value::Array(packages);
        body["properties"]["applicationGroupReferences"] = Value::Array(groups);
    }
    Ok(body)
}

/// The app attach packages that reference the host pool with this (lower-case) id.
pub(super) fn packages_on_pool<'a>(
    inner: &'a Inner,
    pool_key: &'a str,
) -> impl Iterator<Item = &'a store::Stored> + 'a {
    inner
        .store
        .referrers(ResourceType::AppAttachPackage, pool_key)
}

/// The application groups of the host pool with this (lower-case) id.
pub(super) fn app_groups_of<'a>(
    inner: &'a Inner,
    pool_key: &'a str,
) -> impl Iterator<Item = &'a store::Stored> + 'a {
    inner
        .store
        .referrers(ResourceType::ApplicationGroup, pool_key)
}

// ---------------------------------------------------------------- lists

fn list(inner: &Inner, req: &Request, kind: ResourceType, prefix: &str) -> Result<Reply> {
    let filter = Filter::parse(kind, req.query.get("$filter").map(String::as_str))?;
    let page = Page::of(&req.query)?;
    let matching: Vec<&store::Stored> = inner
        .store
        .list(kind, prefix)
        .into_iter()
        .filter(|s| filter.matches(&s.body))
        .collect();
    let mut value = Vec::with_capacity(page.size.min(matching.len()));
    for s in matching.iter().skip(page.skip).take(page.size) {
        let id = ResourceId::parse(&s.id).expect("stored ids parse");
        value.push(get(inner, &id)?);
    }
    let body = page.body(
        value,
        matching.len(),
        &req.query,
        &format!("{}{}", req.base, req.path),
    );
    Ok(Reply::Json(StatusCode::OK, body))
}

/// One page of a list, as `pageSize` and `$skipToken` ask for it.
pub(super) struct Page {
    /// Items per page (100 unless asked).
    pub size: usize,
    /// Items before this page.
    pub skip: usize,
}

impl Page {
    /// The page a request's query asks for.
    pub fn of(query: &BTreeMap<String, String>) -> Result<Self> {
        let size = match query.get("pagesize") {
            None => 100,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ArmError::invalid(format!(
                        "pageSize '{v}' is invalid: give a whole number from 1 to 1000."
                    ))
                })?,
        };
        let skip = match query.get("$skiptoken") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                ArmError::invalid(format!(
                    "$skipToken '{v}' is invalid: use the nextLink as given."
                ))
            })?,
        };
        Ok(Self { size, skip })
    }

    /// The list's body: this page's `value`, and a `nextLink` to `url` with the same query
    /// while items remain of `total`.
    pub fn body(
        &self,
        value: Vec<Value>,
        total: usize,
        query: &BTreeMap<String, String>,
        url: &str,
    ) -> Value {
        let mut body = json!({ "value": value });
        if self.skip + self.size < total {
            let mut next: Vec<(String, String)> = query
                .iter()
                .filter(|(k, _)| k.as_str() != "$skiptoken")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            next.push(("$skipToken".into(), (self.skip + self.size).to_string()));
            let query = serde_urlencoded::to_string(&next).expect("query encodes");
            body["nextLink"] = json!(format!("{url}?{query}"));
        }
        body
    }
}

/// An OData `$filter` of `property eq 'value'` clauses joined by `and`.
struct Filter {
    clauses: Vec<(FilterProperty, String)>,
}

enum FilterProperty {
    Name,
    PackageName,
    PackageFamilyName,
    HostPool,
    Location,
    UserPrincipalName,
}

impl Filter {
    fn parse(kind: ResourceType, text: Option<&str>) -> Result<Self> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Self {
                clauses: Vec::new(),
            });
        };
        let mut clauses = Vec::new();
        for clause in split_and(text) {
            let bad = || {
                ArmError::invalid(format!(
                    "$filter clause '{clause}' is not supported: write property eq 'value', joined by 'and'."
                ))
            };
            let (prop, value) = clause.split_once(" eq ").ok_or_else(bad)?;
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .ok_or_else(bad)?;
            let prop_lower = prop.trim().to_ascii_lowercase();
            let property = match (kind, prop_lower.as_str()) {
                (_, "name") => FilterProperty::Name,
                (_, "location") => FilterProperty::Location,
                (
                    ResourceType::AppAttachPackage,
                    "packagename" | "properties/image/packagename",
                ) => FilterProperty::PackageName,
                (
                    ResourceType::AppAttachPackage,
                    "packagefamilyname" | "properties/image/packagefamilyname",
                ) => FilterProperty::PackageFamilyName,
                (
                    ResourceType::AppAttachPackage,
                    "hostpool" | "hostpoolname" | "properties/hostpoolreferences",
                ) => FilterProperty::HostPool,
                (
                    ResourceType::UserSession,
                    "userprincipalname" | "properties/userprincipalname",
                ) => FilterProperty::UserPrincipalName,
                _ => {
                    return Err(ArmError::invalid(format!(
                        "$filter property '{}' is not supported here; valid properties for filtering are package name and host pool.",
                        prop.trim()
                    )));
                }
            };
            clauses.push((property, value.replace("''", "'")));
        }
        Ok(Self { clauses })
    }

    fn matches(&self, body: &Value) -> bool {
        self.clauses.iter().all(|(prop, want)| {
            let eq = |v: &Value| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(want));
            match prop {
                FilterProperty::Name => {
                    eq(&body["name"])
                        || body["name"].as_str().is_some_and(|n| {
                            n.rsplit('/')
                                .next()
                                .is_some_and(|l| l.eq_ignore_ascii_case(want))
                        })
                }
                FilterProperty::Location => body["location"]
                    .as_str()
                    .is_some_and(|l| arm::location::same(l, want)),
                FilterProperty::PackageName => eq(&body["properties"]["image"]["packageName"]),
                FilterProperty::PackageFamilyName => {
                    eq(&body["properties"]["image"]["packageFamilyName"])
                }
                FilterProperty::HostPool => body["properties"]["hostPoolReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter().any(|r| {
                            eq(r)
                                || r.as_str()
                                    .and_then(|r| r.rsplit('/').next())
                                    .is_some_and(|leaf| leaf.eq_ignore_ascii_case(want))
                        })
                    }),
                FilterProperty::UserPrincipalName => eq(&body["properties"]["userPrincipalName"]),
            }
        })
    }
}

fn split_and(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    let lower = text.to_ascii_lowercase();
    let mut offset = 0;
    while let Some(i) = lower[offset..].find(" and ") {
        out.push(rest[..i].trim().to_string());
        rest = &rest[i + 5..];
        offset += i + 5;
    }
    out.push(rest.trim().to_string());
    out
}

// ---------------------------------------------------------------- PUT

fn put(inner: &mut Inner, req: &Request, id: &ResourceId) -> Result<Reply> {
    if let Some(parent) = id.parent() {
        require(inner, &parent)?;
    }
    let body = match id.kind {
        ResourceType::AppAttachPackage => {
            check_name(id)?;
            let pkg: models::AppAttachPackage = parse(req.body)?;
            let location = required_location(&pkg.location, id)?;
            let properties = validated_package_properties(inner, id, pkg.properties)?;
            envelope(
                id,
                Some(&location),
                pkg.tags.as_ref(),
                to_value(&properties),
            )
        }
        ResourceType::HostPool => {
            check_name(id)?;
            let mut pool: models::HostPool = parse(req.body)?;
            let location = required_location(&pool.location, id)?;
            pool.properties.application_group_references = None;
            pool.properties.app_attach_package_references = None;
            pool.properties.object_id = Some(object_id(id));
            envelope(
                id,
                Some(&location),
                pool.tags.as_ref(),
                to_value(&pool.properties),
            )
        }
        ResourceType::MsixPackage => {
            check_name(id)?;
            let pkg: models::MsixPackage = parse(req.body)?;
            let mut properties = pkg.properties;
            let old: Option<models::MsixPackageProperties> = inner
                .store
                .get(id)
                .and_then(|s| serde_json::from_value(s.body["properties"].clone()).ok());
            properties.last_updated = match old {
                Some(o) if o.image_path == properties.image_path => o.last_updated,
                _ => Some(now()),
            };
            envelope(id, None, None, to_value(&properties))
        }
        ResourceType::ApplicationGroup => {
            check_name(id)?;
            let group: models::ApplicationGroup = parse(req.body)?;
            let location = required_location(&group.location, id)?;
            let mut properties = group.properties;
            let pool = ResourceId::parse(&properties.host_pool_arm_path)
                .filter(|p| p.kind == ResourceType::HostPool)
                .ok_or_else(|| {
                    ArmError::invalid(format!(
                        "properties.hostPoolArmPath '{}' is not a host pool resource id.",
                        properties.host_pool_arm_path
                    ))
                })?;
            let stored_pool = inner.store.get(&pool).ok_or_else(|| {
                ArmError::invalid(format!(
                    "properties.hostPoolArmPath: host pool '{pool}' was not found."
                ))
            })?;
            properties.host_pool_arm_path = stored_pool.id.clone();
            properties.object_id = Some(object_id(id));
            properties.workspace_arm_path = None;
            envelope(
                id,
                Some(&location),
                group.tags.as_ref(),
                to_value(&properties),
            )
        }
        ResourceType::Application => {
            check_name(id)?;
            let parent = id.parent().expect("applications have a parent");
            let group_type = inner.store.get(&parent).and_then(|g| {
                g.body["properties"]["applicationGroupType"]
                    .as_str()
                    .map(String::from)
            });
            if group_type.as_deref() != Some("RemoteApp") {
                return Err(ArmError::bad_request(format!(
                    "Applications can be added to RemoteApp application groups only; '{}' is a {} group.",
                    parent.leaf(),
                    group_type.unwrap_or_default()
                )));
            }
            let app: models::Application = parse(req.body)?;
            let mut properties = app.properties;
            if properties.application_type == Some(models::RemoteApplicationType::MsixApplication) {
                for (field, value) in [
                    (
                        "msixPackageFamilyName",
                        &properties.msix_package_family_name,
                    ),
                    (
                        "msixPackageApplicationId",
                        &properties.msix_package_application_id,
                    ),
                ] {
                    if value.as_deref().is_none_or(str::is_empty) {
                        return Err(ArmError::invalid(format!(
                            "properties.{field} is required when properties.applicationType is MsixApplication."
                        )));
                    }
                }
            }
            // Type, family name and application id are set at creation only.
            if let Some(held) = inner.store.get(id) {
                for field in [
                    "applicationType",
                    "msixPackageFamilyName",
                    "msixPackageApplicationId",
                ] {
                    let now = to_value(&properties)[field].clone();
                    let before = held.body["properties"][field].clone();
                    if now != before {
                        return Err(ArmError::invalid(format!(
                            "properties.{field} cannot be changed once the application is created ({before} -> {now}); delete the application and create it again."
                        )));
                    }
                }
            }
            properties.object_id = Some(object_id(id));
            envelope(id, None, None, to_value(&properties))
        }
        ResourceType::SessionHost | ResourceType::UserSession => {
            return Err(method_not_allowed(req));
        }
    };
    let existed = inner.store.get(id).is_some();
    inner.store.put(id, body.clone());
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(Reply::Json(status, get(inner, id).unwrap_or(body)))
}

/// Checks an app attach package's properties against the world and its previous state,
/// and fills the server-managed fields.
fn validated_package_properties(
    inner: &Inner,
    id: &ResourceId,
    mut properties: models::AppAttachPackageProperties,
) -> Result<models::AppAttachPackageProperties> {
    if let Some(refs) = &mut properties.host_pool_references {
        for (i, r) in refs.iter_mut().enumerate() {
            let pool = ResourceId::parse(r)
                .filter(|p| p.kind == ResourceType::HostPool)
                .ok_or_else(|| {
                    ArmError::invalid(format!(
                        "properties.hostPoolReferences[{i}] '{r}' is not a host pool resource id."
                    ))
                })?;
            let stored = inner.store.get(&pool).ok_or_else(|| {
                ArmError::invalid(format!(
                    "properties.hostPoolReferences[{i}]: host pool '{pool}' was not found."
                ))
            })?;
            *r = stored.id.clone();
        }
    }
    let old: Option<models::AppAttachPackageProperties> = inner
        .store
        .get(id)
        .and_then(|s| serde_json::from_value(s.body["properties"].clone()).ok());
    let old_image = old.as_ref().and_then(|o| o.image.clone());
    if let (Some(new), Some(old)) = (&properties.image, &old_image)
        && new.image_path != old.image_path
        && new.version == old.version
    {
        return Err(ArmError::invalid(format!(
            "properties.image.version must change when properties.image.imagePath changes: the package already runs version {} from another image; an in-place update needs a new version (higher or lower).",
            old.version.as_deref().unwrap_or("(none)")
        )));
    }
    if let Some(image) = &mut properties.image {
        image.last_updated = match &old_image {
            Some(o) if o.image_path == image.image_path && o.version == image.version => {
                o.last_updated.clone()
            }
            _ => Some(now()),
        };
    }
    properties.provisioning_state = Some(models::ProvisioningState::Succeeded);
    Ok(properties)
}

fn object_id(id: &ResourceId) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, id.key().as_bytes()).to_string()
}

// ---------------------------------------------------------------- PATCH

fn patch(inner: &mut Inner, req: &Request, id: &ResourceId) -> Result<Reply> {
    let stored = inner
        .store
        .get(id)
        .ok_or_else(|| not_found(id))?
        .body
        .clone();
    let body = match id.kind {
        ResourceType::AppAttachPackage => {
            let patch: models::AppAttachPackagePatch = parse(req.body)?;
            let mut properties: models::AppAttachPackageProperties =
                serde_json::from_value(stored["properties"].clone()).expect("stored bodies parse");
            if let Some(p) = patch.properties {
                if let Some(image) = p.image {
                    let mut merged = to_value(&properties.image.clone().unwrap_or_default());
                    merge(&mut merged, to_value(&image));
                    properties.image =
                        Some(serde_json::from_value(merged).expect("merged image parses"));
                }
                if p.host_pool_references.is_some() {
                    properties.host_pool_references = p.host_pool_references;
                }
                if p.key_vault_url.is_some() {
                    properties.key_vault_url = p.key_vault_url;
                }
                if p.fail_health_check_on_staging_failure.is_some() {
                    properties.fail_health_check_on_staging_failure =
                        p.fail_health_check_on_staging_failure;
                }
            }
            let properties = validated_package_properties(inner, id, properties)?;
            let mut body = stored;
            body["properties"] = to_value(&properties);
            if let Some(tags) = patch.tags {
                body["tags"] = to_value(&tags);
            }
            body
        }
        ResourceType::MsixPackage => {
            let patch: models::MsixPackagePatch = parse(req.body)?;
            let mut body = stored;
            if let Some(p) = patch.properties {
                merge(&mut body["properties"], to_value(&p));
            }
            body
        }
        ResourceType::SessionHost => {
            let patch: models::SessionHostPatch = parse(req.body)?;
            let mut body = stored;
            if let Some(p) = patch.properties {
                merge(&mut body["properties"], to_value(&p));
            }
            body
        }
        _ => return Err(method_not_allowed(req)),
    };
    inner.store.put(id, body);
    Ok(Reply::Json(StatusCode::OK, get(inner, id)?))
}

/// JSON merge: object fields of `patch` replace or recurse; everything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

// ---------------------------------------------------------------- DELETE

fn delete(inner: &mut Inner, req: &Request, id: &ResourceId) -> Result<Reply> {
    match id.kind {
        ResourceType::UserSession => {
            return if log_off(inner, id) {
                Ok(Reply::Empty(StatusCode::OK))
            } else {
                Ok(Reply::Empty(StatusCode::NO_CONTENT))
            };
        }
        ResourceType::HostPool
        | ResourceType::SessionHost
        | ResourceType::MsixPackage
        | ResourceType::ApplicationGroup
        | ResourceType::Application
        | ResourceType::AppAttachPackage => {}
    }
    let _ = req;
    if inner.store.get(id).is_none() {
        return Ok(Reply::Empty(StatusCode::NO_CONTENT));
    }
    inner.store.delete(id);
    Ok(Reply::Empty(StatusCode::OK))
}

/// Ends a user session: the resource goes, the host's session count drops, and the
/// emulator's record of what it got goes too. Returns whether it existed.
pub(super) fn log_off(inner: &mut Inner, id: &ResourceId) -> bool {
    if inner.store.get(id).is_none() {
        return false;
    }
    inner.store.delete(id);
    inner.store.set_meta(&session_key(id), None);
    let host = id.parent().expect("a session has a host");
    if let Some(h) = inner.store.get(&host) {
        let mut body = h.body.clone();
        let n = body["properties"]["sessions"].as_i64().unwrap_or(0);
        body["properties"]["sessions"] = json!((n - 1).max(0));
        inner.store.put(&host, body);
    }
    true
}

/// The key of a session's record in the store's named values.
pub(super) fn session_key(id: &ResourceId) -> String {
    format!("session/{}", id.key())
}

// ---------------------------------------------------------------- session actions

fn send_message(inner: &mut Inner, req: &Request, id: &ResourceId) -> Result<Reply> {
    inner.store.get(id).ok_or_else(|| not_found(id))?;
    let message: models::SendMessage = if req.body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        parse(req.body)?
    };
    let key = session_key(id);
    if let Some(record) = inner.store.meta(&key).cloned() {
        let mut record: store::SessionRecord =
            serde_json::from_value(record).expect("stored records parse");
        record.messages.push(message);
        inner.store.set_meta(&key, Some(to_value(&record)));
    }
    Ok(Reply::Empty(StatusCode::OK))
}

fn disconnect(inner: &mut Inner, id: &ResourceId) -> Result<Reply> {
    let mut body = inner
        .store
        .get(id)
        .ok_or_else(|| not_found(id))?
        .body
        .clone();
    body["properties"]["sessionState"] = json!("Disconnected");
    inner.store.put(id, body);
    Ok(Reply::Empty(StatusCode::OK))
}

// ---------------------------------------------------------------- package import

/// Reads the packages of an image through the share mapping, as the service's import does:
/// one `AppAttachPackage` per package found, with `properties.image` filled.
fn import_package_info(inner: &mut Inner, req: &Request, pool: &ResourceId) -> Result<Reply> {
    let location = require(inner, pool)?.body["location"]
        .as_str()
        .map(String::from);
    let request: models::ImportPackageInfoRequest = parse(req.body)?;
    let invalid = |message: String| ArmError::new(400, "InvalidParameter", message);
    let path = request
        .path
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            invalid("The property 'path' is required: the UNC path of the image.".into())
        })?;
    let architecture = request.package_architecture.unwrap_or_else(|| "ALL".into());
    const ARCHITECTURES: [&str; 7] = ["ARM", "ARM64", "x86", "x64", "Neutral", "x86a64", "ALL"];
    if !ARCHITECTURES
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&architecture))
    {
        return Err(invalid(format!(
            "The property 'packageArchitecture' is '{architecture}'; it must be one of {}.",
            ARCHITECTURES.join(", ")
        )));
    }
    let local = inner
        .shares
        .iter()
        .find_map(|s| s.resolve(&path))
        .ok_or_else(|| {
            invalid(format!(
                "The image path '{path}' is not on a share the service can reach."
            ))
        })?;
    if !local.is_file() {
        return Err(invalid(format!(
            "The image '{path}' does not exist on the share."
        )));
    }
    if crate::inspect::package::is_package_path(&path) {
        return Err(invalid(format!(
            "'{path}' is a package, not an image: expand it into a VHDX, VHD or CimFS image first."
        )));
    }
    let found = match crate::inspect::inspect_path(&local) {
        Ok(crate::inspect::Inspection::Image { packages, .. }) => packages,
        Ok(crate::inspect::Inspection::Package(_)) => {
            return Err(invalid(format!("'{path}' is not an image.")));
        }
        Ok(crate::inspect::Inspection::Cim(_)) => {
            return Err(ArmError::new(
                400,
                "UnsupportedImageFormat",
                format!("The emulator reads VHDX and VHD images only; '{path}' is a CimFS image."),
            ));
        }
        Err(e) => {
            // The error names the local file; say the UNC path instead.
            let what = e.to_string().replace(&local.display().to_string(), &path);
            return Err(invalid(format!(
                "The image '{path}' cannot be read: {what}"
            )));
        }
    };
    let last_updated = std::fs::metadata(&local)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map_or_else(now, |t| t.to_string());
    let value: Vec<Value> = found
        .iter()
        .filter(|f| {
            let a = &f.package.facts.architecture;
            architecture.eq_ignore_ascii_case("ALL") || architecture.eq_ignore_ascii_case(a)
        })
        .map(|f| to_value(&imported(f, &path, &last_updated, location.clone())))
        .collect();
    Ok(Reply::Json(StatusCode::OK, json!({ "value": value })))
}

fn imported(
    f: &crate::inspect::Found,
    image_path: &str,
    last_updated: &str,
    location: Option<String>,
) -> models::AppAttachPackage {
    let facts = &f.package.facts;
    let alias = facts.full_name.to_ascii_lowercase();
    let signature = facts.signature.as_ref();
    models::AppAttachPackage {
        id: None,
        name: Some(alias.clone()),
        resource_type: Some(ResourceType::AppAttachPackage.arm_type()),
        location,
        tags: None,
        properties: models::AppAttachPackageProperties {
            image: Some(models::AppAttachPackageInfoProperties {
                package_alias: Some(alias),
                image_path: Some(image_path.to_string()),
                package_name: Some(facts.name.clone()),
                package_family_name: Some(facts.family_name.clone()),
                package_full_name: Some(facts.full_name.clone()),
                display_name: facts.display_name.clone(),
                package_relative_path: f.relative_path.clone(),
                is_regular_registration: Some(false),
                is_active: Some(false),
                package_dependencies: Some(
                    facts
                        .dependencies
                        .iter()
                        .map(|d| models::MsixPackageDependencies {
                            dependency_name: Some(d.name.clone()),
                            publisher: Some(d.publisher.clone()),
                            min_version: Some(d.min_version.clone()),
                        })
                        .collect(),
                ),
                version: Some(facts.version.clone()),
                last_updated: Some(last_updated.to_string()),
                package_applications: Some(
                    facts
                        .applications
                        .iter()
                        .map(|a| models::MsixPackageApplications {
                            app_id: Some(a.id.clone()),
                            description: a.display_name.clone(),
                            app_user_model_id: Some(a.app_user_model_id.clone()),
                            friendly_name: a.display_name.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                certificate_name: signature.map(|s| s.subject.clone()),
                certificate_expiry: signature.map(|s| s.not_after.to_string()),
                is_package_timestamped: signature.map(|s| {
                    if s.timestamp.is_some() {
                        models::PackageTimestamped::Timestamped
                    } else {
                        models::PackageTimestamped::NotTimestamped
                    }
                }),
            }),
            ..Default::default()
        },
    }
}

// ---------------------------------------------------------------- role assignments

const ROLE_ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";

fn role_id(scope: &str, name: &str) -> String {
    format!(
        "{}/providers/{ROLE_ASSIGNMENT_TYPE}/{name}",
        scope.trim_end_matches('/')
    )
}

fn check_scope(inner: &Inner, scope: &str) -> Result<()> {
    let parts: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() < 2 || !parts[0].eq_ignore_ascii_case("subscriptions") {
        return Err(ArmError::invalid(format!(
            "The scope '{scope}' is not a valid ARM scope."
        )));
    }
    if parts.len() <= 4 {
        return Ok(()); // a subscription or a resource group
    }
    let id = ResourceId::parse(scope).ok_or_else(|| {
        ArmError::invalid(format!(
            "The scope '{scope}' is not a resource the emulator knows how to hold."
        ))
    })?;
    require(inner, &id).map(|_| ())
}

fn roles_item(inner: &mut Inner, req: &Request, scope: &str, name: &str) -> Result<Reply> {
    let id = role_id(scope, name);
    match *req.method {
        Method::GET => inner
            .store
            .role(&id)
            .cloned()
            .map(|b| Reply::Json(StatusCode::OK, b))
            .ok_or_else(|| {
                ArmError::new(
                    404,
                    "RoleAssignmentNotFound",
                    format!("The role assignment '{name}' is not found."),
                )
            }),
        Method::DELETE => match inner.store.role(&id).cloned() {
            Some(body) => {
                inner.store.delete_role(&id);
                Ok(Reply::Json(StatusCode::OK, body))
            }
            None => Ok(Reply::Empty(StatusCode::NO_CONTENT)),
        },
        Method::PUT => put_role(inner, req, scope, name, &id),
        _ => Err(method_not_allowed(req)),
    }
}

fn put_role(inner: &mut Inner, req: &Request, scope: &str, name: &str, id: &str) -> Result<Reply> {
    if !arm::is_guid(name) {
        return Err(ArmError::new(
            400,
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        ));
    }
    check_scope(inner, scope)?;
    let create: models::RoleAssignment = parse(req.body)?;
    let mut props = create.properties;
    check_condition(&props)?;
    let role = props
        .role_definition_id
        .rsplit_once("/providers/Microsoft.Authorization/roleDefinitions/")
        .map(|(_, r)| r)
        .filter(|r| arm::is_guid(r))
        .ok_or_else(|| {
            ArmError::new(
                400,
                "InvalidRoleDefinitionId",
                format!(
                    "properties.roleDefinitionId '{}' is not valid: use /subscriptions/{{id}}/providers/Microsoft.Authorization/roleDefinitions/{{guid}}.",
                    props.role_definition_id
                ),
            )
        })?
        .to_string();
    let principal = inner
        .world
        .principal(&props.principal_id)
        .filter(|p| p.object_id.eq_ignore_ascii_case(&props.principal_id));
    let Some(principal) = principal else {
        return Err(ArmError::new(
            400,
            "PrincipalNotFound",
            format!(
                "Principal {} does not exist in the directory.",
                props.principal_id
            ),
        ));
    };
    if let Some(t) = props.principal_type
        && t != principal.kind
    {
        return Err(ArmError::invalid(format!(
            "properties.principalType is {t:?} but principal {} is a {:?}.",
            props.principal_id, principal.kind
        )));
    }
    let same = |b: &Value| {
        let p = &b["properties"];
        p["scope"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(scope.trim_end_matches('/')))
            && p["principalId"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(&props.principal_id))
            && p["roleDefinitionId"]
                .as_str()
                .is_some_and(|s| s.to_ascii_lowercase().ends_with(&role.to_ascii_lowercase()))
    };
    if let Some(existing) = inner.store.role(id) {
        return if same(existing) {
            // What ARM lets change under the same name: the description and the
            // condition. Anything else sent again is the assignment as it is.
            let mut kept: models::RoleAssignment =
                serde_json::from_value(existing.clone()).expect("stored role assignments parse");
            let old = kept.properties.clone();
            kept.properties.description = props.description;
            kept.properties.condition = props.condition;
            kept.properties.condition_version = props.condition_version;
            if kept.properties == old {
                return Ok(Reply::Json(StatusCode::CREATED, existing.clone()));
            }
            kept.properties.updated_on = Some(now());
            let body = to_value(&kept);
            inner.store.put_role(id, body.clone());
            Ok(Reply::Json(StatusCode::CREATED, body))
        } else {
            Err(ArmError::new(
                409,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            ))
        };
    }
    if inner.store.roles_at(scope).any(same) {
        return Err(ArmError::new(
            409,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        ));
    }
    let stamp = now();
    props.principal_type = Some(principal.kind);
    props.scope = Some(scope.trim_end_matches('/').to_string());
    props.created_on = Some(stamp.clone());
    props.updated_on = Some(stamp);
    let body = to_value(&models::RoleAssignment {
        id: Some(id.to_string()),
        name: Some(name.to_string()),
        resource_type: Some(ROLE_ASSIGNMENT_TYPE.to_string()),
        properties: props,
    });
    inner.store.put_role(id, body.clone());
    Ok(Reply::Json(StatusCode::CREATED, body))
}

/// The only version of the condition language ARM accepts.
const CONDITION_VERSION: &str = "2.0";

/// Refuses a condition ARM would refuse: one without `conditionVersion` "2.0", an empty
/// one, or a version without a condition.
fn check_condition(props: &models::RoleAssignmentProperties) -> Result<()> {
    let refuse = |what: String| {
        Err(ArmError::new(
            400,
            "InvalidRoleAssignmentCondition",
            format!("The given role assignment condition is invalid: {what}."),
        ))
    };
    match (
        props.condition.as_deref(),
        props.condition_version.as_deref(),
    ) {
        (None, None) => Ok(()),
        (Some(c), _) if c.trim().is_empty() => refuse(format!(
            "properties.condition is empty; give the condition, with properties.conditionVersion \"{CONDITION_VERSION}\", or leave both out"
        )),
        (Some(_), None) => refuse(format!(
            "properties.conditionVersion is required with properties.condition; set it to \"{CONDITION_VERSION}\""
        )),
        (Some(_), Some(CONDITION_VERSION)) => Ok(()),
        (Some(_), Some(v)) => refuse(format!(
            "properties.conditionVersion '{v}' is not supported; the only version is \"{CONDITION_VERSION}\""
        )),
        (None, Some(_)) => refuse(format!(
            "properties.conditionVersion is set without properties.condition; give the condition (version \"{CONDITION_VERSION}\") or leave both out"
        )),
    }
}

fn roles_list(inner: &Inner, req: &Request, scope: &str) -> Result<Reply> {
    if *req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    let filter = req
        .query
        .get("$filter")
        .map(|f| f.trim().to_string())
        .unwrap_or_default();
    let (at_scope_only, principal) = if filter.is_empty() {
        (false, None)
    } else if filter.eq_ignore_ascii_case("atScope()") {
        (true, None)
    } else if let Some(p) = filter
        .strip_prefix("principalId eq '")
        .or_else(|| filter.strip_prefix("principalId eq \""))
        .map(|p| p.trim_end_matches(['\'', '"']).to_ascii_lowercase())
    {
        (false, Some(p))
    } else {
        return Err(ArmError::invalid(format!(
            "$filter '{filter}' is not supported: use atScope() or principalId eq '{{objectId}}'."
        )));
    };
    let value: Vec<Value> = inner
        .store
        .roles_around(&scope, !at_scope_only)
        .into_iter()
        .filter(|b| {
            principal.as_ref().is_none_or(|p| {
                b["properties"]["principalId"]
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(p))
            })
        })
        .cloned()
        .collect();
    Ok(Reply::Json(StatusCode::OK, json!({ "value": value })))
}

/// Desktop Virtualization User role assignments at `scope`: the object ids they grant.
pub(super) fn users_at(inner: &Inner, scope: &str) -> std::collections::BTreeSet<String> {
    inner
        .store
        .roles_at(scope)
        .filter(|b| {
            b["properties"]["roleDefinitionId"]
                .as_str()
                .is_some_and(|r| {
                    r.to_ascii_lowercase()
                        .ends_with(arm::DESKTOP_VIRTUALIZATION_USER_ROLE)
                })
        })
        .filter_map(|b| {
            b["properties"]["principalId"]
                .as_str()
                .map(str::to_ascii_lowercase)
        })
        .collect()
}

// ---------------------------------------------------------------- world

/// Creates the world's host pools, session hosts, application groups and their
/// members' role assignments in a fresh state.
pub fn load_world(store: &mut store::State, world: &World) {
    let (sub, rg) = (world.subscription.as_str(), world.resource_group.as_str());
    for hp in &world.host_pools {
        let vm_rg = world.vm_resource_group(hp);
        let id = ResourceId::new(sub, rg, ResourceType::HostPool, &[&hp.name]);
        let mut properties = json!({
            "hostPoolType": hp.pool_type,
            "loadBalancerType": "BreadthFirst",
            "preferredAppGroupType": "Desktop",
            "objectId": object_id(&id),
        });
        if hp.identity_provider == super::world::IdentityProvider::EntraId {
            properties["customRdpProperty"] = json!("targetisaadjoined:i:1;enablerdsaadauth:i:1;");
        }
        let tags = BTreeMap::from([(
            "appattach.io/identity-provider".to_string(),
            hp.identity_provider.as_str().to_string(),
        )]);
        store.put(
            &id,
            envelope(
                &id,
                Some(&arm::location::normalize(&hp.location)),
                Some(&tags),
                properties,
            ),
        );
        for sh in &hp.session_hosts {
            let sid = id.child(ResourceType::SessionHost, &sh.name);
            let vm = crate::arm::compute::vm_id(sub, vm_rg, sh.vm_name());
            let props = models::SessionHostProperties {
                virtual_machine_id: Some(super::compute::machine_id(&vm)),
                resource_id: Some(vm),
                object_id: Some(object_id(&sid)),
                last_heart_beat: Some(now()),
                sessions: Some(0),
                agent_version: Some("1.0.10673.1500".into()),
                allow_new_session: Some(true),
                status: Some("Available".into()),
                os_version: Some(sh.os.os_version().into()),
                session_host_health_check_results: Some(vec![
                    models::SessionHostHealthCheckReport {
                        health_check_name: Some("AppAttachHealthCheck".into()),
                        health_check_result: Some("Unknown".into()),
                        additional_failure_details: None,
                    },
                ]),
                ..Default::default()
            };
            store.put(&sid, envelope(&sid, None, None, to_value(&props)));
        }
    }
    for ag in &world.application_groups {
        let id = ResourceId::new(sub, rg, ResourceType::ApplicationGroup, &[&ag.name]);
        let pool = ResourceId::new(sub, rg, ResourceType::HostPool, &[&ag.host_pool]);
        let location = world
            .host_pools
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(&ag.host_pool))
            .map(|h| arm::location::normalize(&h.location));
        let props = json!({
            "hostPoolArmPath": pool.to_string(),
            "applicationGroupType": ag.group_type,
            "objectId": object_id(&id),
        });
        store.put(&id, envelope(&id, location.as_deref(), None, props));
        for member in &ag.members {
            let Some(p) = world.principal(member) else {
                continue;
            };
            let scope = id.to_string();
            let name = arm::role_assignment_name(
                &scope,
                &p.object_id,
                arm::DESKTOP_VIRTUALIZATION_USER_ROLE,
            );
            let rid = role_id(&scope, &name);
            let stamp = now();
            let body = to_value(&models::RoleAssignment {
                id: Some(rid.clone()),
                name: Some(name),
                resource_type: Some(ROLE_ASSIGNMENT_TYPE.into()),
                properties: models::RoleAssignmentProperties {
                    role_definition_id: models::role_definition_id(
                        sub,
                        arm::DESKTOP_VIRTUALIZATION_USER_ROLE,
                    ),
                    principal_id: p.object_id.clone(),
                    principal_type: Some(if p.kind == PrincipalType::User {
                        PrincipalType::User
                    } else {
                        PrincipalType::Group
                    }),
                    scope: Some(scope),
                    description: Some(
                        "application group membership from the emulator's world".into(),
                    ),
                    condition: None,
                    condition_version: None,
                    created_on: Some(stamp.clone()),
                    updated_on: Some(stamp),
                },
            });
            store.put_role(&rid, body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_as_arm_names_them_in_authorization_failed() {
        let rg = "/subscriptions/s/resourceGroups/rg";
        let dv = format!("{rg}/providers/Microsoft.DesktopVirtualization");
        let cases = [
            (
                Method::GET,
                format!("{dv}/hostPools/hp"),
                "Microsoft.DesktopVirtualization/hostPools/read",
            ),
            (
                Method::GET,
                format!("{dv}/hostPools"),
                "Microsoft.DesktopVirtualization/hostPools/read",
            ),
            (
                Method::PUT,
                format!("{dv}/appAttachPackages/p"),
                "Microsoft.DesktopVirtualization/appAttachPackages/write",
            ),
            (
                Method::PATCH,
                format!("{dv}/hostPools/hp/sessionHosts/h"),
                "Microsoft.DesktopVirtualization/hostPools/sessionHosts/write",
            ),
            (
                Method::DELETE,
                format!("{dv}/applicationGroups/ag/applications/a"),
                "Microsoft.DesktopVirtualization/applicationGroups/applications/delete",
            ),
            (
                Method::POST,
                format!("{dv}/hostPools/hp/importAppAttachPackageInfo"),
                "Microsoft.DesktopVirtualization/hostPools/importAppAttachPackageInfo/action",
            ),
            (
                Method::PUT,
                format!("{dv}/hostPools/hp/providers/Microsoft.Authorization/roleAssignments/r"),
                "Microsoft.Authorization/roleAssignments/write",
            ),
            (
                Method::GET,
                format!("{rg}/providers/Microsoft.Compute/virtualMachines"),
                "Microsoft.Compute/virtualMachines/read",
            ),
            (
                Method::GET,
                rg.to_string(),
                "Microsoft.Resources/subscriptions/resourceGroups/read",
            ),
            (Method::GET, "/".to_string(), "Microsoft.Resources/read"),
            (
                Method::GET,
                "/x/providers".to_string(),
                "Microsoft.Resources/x/read",
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(action(&method, &path), want, "{method} {path}");
        }
    }
}
