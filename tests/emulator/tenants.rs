//! Entra ID and ARM on who may call: the token endpoint (`POST /{tenant}/oauth2/v2.0/token`)
//! for the world's identities, with a client secret or a federated assertion, and its
//! refusals; ARM's 401, 403 and 404 for a world with a `tenantId` (and none without one);
//! and the write log naming who wrote.

use appattach_operator::emulator::World;
use appattach_operator::emulator::world::Identity;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

const TENANT_A: &str = "11111111-1111-4111-8111-111111111111";
const TENANT_B: &str = "22222222-2222-4222-8222-222222222222";
const SUB_B: &str = "33333333-3333-4333-8333-333333333333";
/// Tenant A's application with a client secret, allowed on subscription A.
const CLIENT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const OID_A: &str = "bbbbbbbb-0000-4000-8000-00000000000a";
const SECRET_A: &str = "s3cret-A~never-echoed";
/// Tenant A's workload identity (federated), allowed on subscription A.
const CLIENT_FED: &str = "aaaaaaaa-0000-4000-8000-0000000000fe";
const OID_FED: &str = "bbbbbbbb-0000-4000-8000-0000000000fe";
const SUBJECT: &str = "system:serviceaccount:team-a:appattach-workload";
/// Tenant A's application that is not among subscription A's principals.
const CLIENT_OTHER: &str = "aaaaaaaa-0000-4000-8000-0000000000cc";
const OID_OTHER: &str = "bbbbbbbb-0000-4000-8000-0000000000cc";
const SECRET_OTHER: &str = "other-secret";
/// Tenant B's application.
const CLIENT_B: &str = "aaaaaaaa-0000-4000-8000-00000000000b";
const OID_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const SECRET_B: &str = "s3cret-B";
const ARM_SCOPE: &str = "https://management.azure.com/.default";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The identities of both tenants.
fn identities() -> Vec<Identity> {
    serde_yaml_ng::from_str(&format!(
        r#"
- {{tenantId: {TENANT_A}, clientId: {CLIENT_A}, objectId: {OID_A}, clientSecret: "{SECRET_A}"}}
- tenantId: {TENANT_A}
  clientId: {CLIENT_FED}
  objectId: {OID_FED}
  federatedSubjects: ["{SUBJECT}"]
- {{tenantId: {TENANT_A}, clientId: {CLIENT_OTHER}, objectId: {OID_OTHER}, clientSecret: {SECRET_OTHER}}}
- {{tenantId: {TENANT_B}, clientId: {CLIENT_B}, objectId: {OID_B}, clientSecret: {SECRET_B}}}
"#
    ))
    .expect("the identities parse")
}

/// The test world in tenant A, knowing both tenants' identities; only A's secret
/// application and its workload identity may call ARM.
fn world_a() -> World {
    let mut w = world();
    w.tenant_id = Some(TENANT_A.into());
    w.identities = identities();
    w.principals = Some(vec![OID_A.into(), OID_FED.to_ascii_uppercase()]);
    w
}

async fn start_a() -> TestEmulator {
    TestEmulator::start_with(|c| c.world = Some(world_a())).await
}

/// Asks `em`'s token endpoint of `tenant` with `form`.
async fn ask(em: &TestEmulator, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = em
        .http
        .post(em.served.token_url(tenant))
        .form(form)
        .send()
        .await
        .expect("the emulator answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Asks tenant A's token endpoint with an owned form.
/// Exchanges the service-account token `assertion` for an ARM token of the federated
/// identity in tenant A.
async fn exchange(em: &TestEmulator, assertion: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_FED),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
        ("scope", ARM_SCOPE),
    ];
    ask(em, TENANT_A, &form).await
}

async fn ask_fed(em: &TestEmulator, form: Vec<(&str, String)>) -> (u16, Value) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ask(em, TENANT_A, &form).await
}

fn secret_form<'a>(client: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
        ("scope", ARM_SCOPE),
    ]
}

/// A token of `client` in `tenant`, signing in with `secret`.
async fn token(em: &TestEmulator, tenant: &str, client: &str, secret: &str) -> String {
    let (status, body) = ask(em, tenant, &secret_form(client, secret)).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWT of these claims (with a signature nobody checks).
fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(&json!({"alg": "RS256", "kid": "k"})),
        b64(&claims)
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What a kubelet projects for a service account: a token for Entra's token exchange.
fn assertion(sub: &str, aud: Value, exp: i64) -> String {
    jwt(json!({
        "iss": "https://oidc.prod-aks.azure.com/0000/",
        "sub": sub,
        "aud": aud,
        "iat": now() - 60,
        "nbf": now() - 60,
        "exp": exp,
    }))
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Sends an ARM request with `auth` as its Authorization header (none when absent).
async fn arm(
    em: &TestEmulator,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut req = em
        .http
        .request(method, format!("{}{path}{sep}{API}", em.served.url()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        challenge,
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts an Entra refusal: status, OAuth error, `AADSTS` code and a part of the message.
fn refused(answer: &(u16, Value), status: u16, error: &str, code: u32, says: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains(says), "{description} lacks {says:?}");
    let text = body.to_string();
    assert!(
        !text.contains(SECRET_A) && !text.contains("c2lnbmF0dXJl"),
        "a refusal echoes no secret or assertion: {text}"
    );
}

#[tokio::test]
async fn a_client_secret_gets_a_token_with_the_identitys_claims() {
    let em = start_a().await;
    let before = now();
    let (status, body) = ask(&em, TENANT_A, &secret_form(CLIENT_A, SECRET_A)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["tid"], TENANT_A);
    assert_eq!(c["oid"], OID_A);
    assert_eq!(c["sub"], OID_A, "a service principal's subject is its oid");
    assert_eq!(c["appid"], CLIENT_A);
    assert_eq!(c["aud"], "https://management.azure.com");
    assert_eq!(c["iss"], format!("https://sts.windows.net/{TENANT_A}/"));
    let (iat, nbf, exp) = (
        c["iat"].as_i64().unwrap(),
        c["nbf"].as_i64().unwrap(),
        c["exp"].as_i64().unwrap(),
    );
    assert!((before - 1..=now() + 1).contains(&iat), "{c}");
    assert_eq!(nbf, iat);
    assert_eq!(exp, iat + 3599);
    // The tenant and the client id are GUIDs: any case will do.
    let upper = ask(
        &em,
        &TENANT_A.to_ascii_uppercase(),
        &secret_form(&CLIENT_A.to_ascii_uppercase(), SECRET_A),
    )
    .await;
    assert_eq!(upper.0, 200, "{}", upper.1);
}

#[tokio::test]
async fn a_federated_assertion_gets_a_token_for_its_identity() {
    let em = start_a().await;
    let a = assertion(SUBJECT, json!(["api://AzureADTokenExchange"]), now() + 3600);
    let (status, body) = exchange(&em, &a).await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        (&c["tid"], &c["oid"], &c["appid"]),
        (&json!(TENANT_A), &json!(OID_FED), &json!(CLIENT_FED))
    );
    // `aud` may be a string too.
    let a = assertion(SUBJECT, json!("api://AzureADTokenExchange"), now() + 60);
    assert_eq!(exchange(&em, &a).await.0, 200);
}

#[tokio::test]
async fn the_token_endpoint_refuses_as_entra_does() {
    let em = start_a().await;
    let fed = |a: &str| {
        vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", CLIENT_FED.to_string()),
            ("client_assertion_type", JWT_BEARER.to_string()),
            ("client_assertion", a.to_string()),
            ("scope", ARM_SCOPE.to_string()),
        ]
    };

    // An application of another tenant is not in this one.
    refused(
        &ask(&em, TENANT_A, &secret_form(CLIENT_B, SECRET_B)).await,
        400,
        "unauthorized_client",
        700016,
        &format!(
            "Application with identifier '{CLIENT_B}' was not found in the directory '{TENANT_A}'"
        ),
    );
    refused(
        &ask(&em, TENANT_A, &secret_form(CLIENT_A, "wrong")).await,
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided.",
    );
    // The workload identity has no secret.
    refused(
        &ask(&em, TENANT_A, &secret_form(CLIENT_FED, SECRET_A)).await,
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided.",
    );
    let other = "system:serviceaccount:team-b:appattach-workload";
    refused(
        &ask_fed(
            &em,
            fed(&assertion(
                other,
                json!(["api://AzureADTokenExchange"]),
                now() + 600,
            )),
        )
        .await,
        401,
        "invalid_client",
        70021,
        &format!(
            "No matching federated identity record found for presented assertion subject '{other}'"
        ),
    );
    refused(
        &ask_fed(
            &em,
            fed(&assertion(
                SUBJECT,
                json!(["https://management.azure.com"]),
                now() + 600,
            )),
        )
        .await,
        401,
        "invalid_client",
        700212,
        "assertion audience 'https://management.azure.com'",
    );
    refused(
        &ask_fed(
            &em,
            fed(&assertion(
                SUBJECT,
                json!(["api://AzureADTokenExchange"]),
                now() - 10,
            )),
        )
        .await,
        401,
        "invalid_client",
        700024,
        "Client assertion is not within its valid time range",
    );
    for malformed in ["not-a-jwt", "a.!!!.c", "a.bm90IGpzb24.c"] {
        refused(
            &ask_fed(&em, fed(malformed)).await,
            400,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        );
    }
    // Malformed requests.
    refused(
        &ask(
            &em,
            TENANT_A,
            &[
                ("client_id", CLIENT_A),
                ("client_secret", SECRET_A),
                ("scope", ARM_SCOPE),
            ],
        )
        .await,
        400,
        "invalid_request",
        900144,
        "'grant_type'",
    );
    refused(
        &ask(
            &em,
            TENANT_A,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", SECRET_A),
                ("scope", ARM_SCOPE),
            ],
        )
        .await,
        400,
        "invalid_request",
        900144,
        "'client_id'",
    );
    refused(
        &ask(
            &em,
            TENANT_A,
            &[("grant_type", "password"), ("client_id", CLIENT_A)],
        )
        .await,
        400,
        "unsupported_grant_type",
        70003,
        "'password'",
    );
    refused(
        &ask(
            &em,
            TENANT_A,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_A),
                ("client_secret", SECRET_A),
                ("scope", "https://management.azure.com/user_impersonation"),
            ],
        )
        .await,
        400,
        "invalid_scope",
        1002012,
        "/.default",
    );
    refused(
        &ask(
            &em,
            TENANT_A,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_A),
                ("scope", ARM_SCOPE),
            ],
        )
        .await,
        401,
        "invalid_client",
        7000216,
        "'client_assertion', 'client_secret'",
    );
    refused(
        &ask(
            &em,
            "99999999-9999-4999-8999-999999999999",
            &secret_form(CLIENT_A, SECRET_A),
        )
        .await,
        400,
        "invalid_request",
        90002,
        "Tenant '99999999-9999-4999-8999-999999999999' not found",
    );
    // A body that is not a form.
    let resp = em
        .http
        .post(em.served.token_url(TENANT_A))
        .body(vec![0xff, 0xfe, b'=', b'%'])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn one_emulators_token_endpoint_serves_a_second_tenants_emulator() {
    let a = start_a().await;
    // Subscription B of tenant B, whose emulator knows no identity itself.
    let b = TestEmulator::start_with(|c| {
        let mut w = World::default();
        w.subscription = SUB_B.into();
        w.tenant_id = Some(TENANT_B.into());
        w.principals = Some(vec![OID_B.into()]);
        c.world = Some(w);
    })
    .await;
    let pools_b = format!(
        "/subscriptions/{SUB_B}/resourceGroups/rg-avd/providers/Microsoft.DesktopVirtualization/hostPools"
    );
    let token_b = token(&a, TENANT_B, CLIENT_B, SECRET_B).await;
    assert_eq!(claims(&token_b)["tid"], TENANT_B);
    let (status, body, _) = arm(&b, Method::GET, &pools_b, Some(&bearer(&token_b)), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], json!([]));
    // Tenant A's token is refused on B, and B's on A: each names the tenant to ask.
    let token_a = token(&a, TENANT_A, CLIENT_A, SECRET_A).await;
    let (status, body, challenge) =
        arm(&b, Method::GET, &pools_b, Some(&bearer(&token_a)), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenTenant");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "The access token is from the wrong issuer 'https://sts.windows.net/{TENANT_A}/'. It must match the tenant 'https://sts.windows.net/{TENANT_B}/' associated with this subscription. Please use the authority (URL) '{}/{TENANT_B}' to get the token.",
            b.served.authority_host()
        )),
        "{message}"
    );
    assert!(challenge.unwrap().contains(&format!(
        "authorization_uri=\"{}/{TENANT_B}\"",
        b.served.url()
    )),);
    let (status, body, _) = arm(
        &a,
        Method::GET,
        &pool_id("hp-a"),
        Some(&bearer(&token_b)),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("InvalidAuthenticationTokenTenant"))
    );
}

#[tokio::test]
async fn arm_refuses_callers_without_a_valid_token_of_its_tenant() {
    let em = start_a().await;
    let path = pool_id("hp-a");
    let code = |answer: &(u16, Value, Option<String>)| {
        (
            answer.0,
            answer.1["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };

    let none = arm(&em, Method::GET, &path, None, None).await;
    assert_eq!(code(&none), (401, "AuthenticationFailed".into()));
    assert!(
        none.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'Authorization' header is missing")
    );
    assert!(none.2.unwrap().starts_with(&format!(
        "Bearer authorization_uri=\"{}/{TENANT_A}\"",
        em.served.url()
    )));
    let basic = arm(&em, Method::GET, &path, Some("Basic dXNlcjpwYXNz"), None).await;
    assert_eq!(code(&basic), (401, "AuthenticationFailed".into()));

    for garbage in ["garbage", "a.b", "a.!!!.c", "a.bm90IGpzb24.c", "a.W10.c"] {
        let answer = arm(&em, Method::GET, &path, Some(&bearer(garbage)), None).await;
        assert_eq!(
            code(&answer),
            (401, "InvalidAuthenticationToken".into()),
            "{garbage}"
        );
    }
    // Claims missing or wrong.
    let good = json!({"aud": "https://management.azure.com/", "tid": TENANT_A, "oid": OID_A,
                      "appid": CLIENT_A, "exp": now() + 600});
    let without = |claim: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(claim);
        jwt(c)
    };
    for claim in ["tid", "oid", "exp", "aud"] {
        let answer = arm(
            &em,
            Method::GET,
            &path,
            Some(&bearer(&without(claim))),
            None,
        )
        .await;
        assert_eq!(
            code(&answer),
            (401, "InvalidAuthenticationToken".into()),
            "without {claim}"
        );
    }
    let mut graph = good.clone();
    graph["aud"] = json!("https://graph.microsoft.com");
    let answer = arm(&em, Method::GET, &path, Some(&bearer(&jwt(graph))), None).await;
    assert_eq!(code(&answer), (401, "InvalidAuthenticationToken".into()));
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong audience or resource 'https://graph.microsoft.com'")
    );
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 5);
    let answer = arm(&em, Method::GET, &path, Some(&bearer(&jwt(expired))), None).await;
    assert_eq!(code(&answer), (401, "ExpiredAuthenticationToken".into()));
    // A token made by hand with the right claims will do, as no signature is checked.
    let answer = arm(
        &em,
        Method::GET,
        &path,
        Some(&bearer(&jwt(good.clone()))),
        None,
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);

    // Another subscription is not found, whatever the path under it.
    let token_a = bearer(&token(&em, TENANT_A, CLIENT_A, SECRET_A).await);
    let elsewhere = format!(
        "/subscriptions/{SUB_B}/resourceGroups/{RG}/providers/Microsoft.DesktopVirtualization/hostPools/hp-a"
    );
    let answer = arm(&em, Method::GET, &elsewhere, Some(&token_a), None).await;
    assert_eq!(code(&answer), (404, "SubscriptionNotFound".into()));
    assert_eq!(
        answer.1["error"]["message"],
        format!("The subscription '{SUB_B}' could not be found.")
    );
    let answer = arm(
        &em,
        Method::GET,
        &format!("/subscriptions/{SUB_B}/providers/Microsoft.DesktopVirtualization/hostPools"),
        Some(&token_a),
        None,
    )
    .await;
    assert_eq!(code(&answer), (404, "SubscriptionNotFound".into()));
    let answer = arm(&em, Method::GET, &path, Some(&token_a), None).await;
    assert_eq!(answer.0, 200, "{}", answer.1);

    // The emulator's own controls need no token.
    assert_eq!(em.get("/_emulator/healthz").await.0, 200);
    assert_eq!(em.get("/_emulator/writes").await.0, 200);
    assert_eq!(em.get("/_emulator/requests").await.0, 200);
}

#[tokio::test]
async fn a_principal_the_subscription_does_not_list_is_forbidden() {
    let em = start_a().await;
    em.share_cim("apps", "a.cim");
    let other = bearer(&token(&em, TENANT_A, CLIENT_OTHER, SECRET_OTHER).await);
    let forbidden = |answer: &(u16, Value, Option<String>), action: &str, scope: &str| {
        assert_eq!(answer.0, 403, "{}", answer.1);
        assert_eq!(answer.1["error"]["code"], "AuthorizationFailed");
        assert_eq!(
            answer.1["error"]["message"].as_str().unwrap(),
            format!(
                "The client '{CLIENT_OTHER}' with object id '{OID_OTHER}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            )
        );
    };
    let pool = pool_id("hp-a");
    forbidden(
        &arm(&em, Method::GET, &pool, Some(&other), None).await,
        "Microsoft.DesktopVirtualization/hostPools/read",
        &pool,
    );
    let package = package_path("pkg");
    let body = package_body(r"\\fs\apps\apps\a.cim", "1.0.0.0", &["hp-a"]);
    forbidden(
        &arm(&em, Method::PUT, &package, Some(&other), Some(body.clone())).await,
        "Microsoft.DesktopVirtualization/appAttachPackages/write",
        &package,
    );
    forbidden(
        &arm(&em, Method::DELETE, &package, Some(&other), None).await,
        "Microsoft.DesktopVirtualization/appAttachPackages/delete",
        &package,
    );
    let list = format!("{}/hostPools/hp-a/sessionHosts", rg_path());
    forbidden(
        &arm(&em, Method::GET, &list, Some(&other), None).await,
        "Microsoft.DesktopVirtualization/hostPools/sessionHosts/read",
        &list,
    );
    let import = format!("{pool}/importAppAttachPackageInfo");
    forbidden(
        &arm(&em, Method::POST, &import, Some(&other), Some(json!({}))).await,
        "Microsoft.DesktopVirtualization/hostPools/importAppAttachPackageInfo/action",
        &import,
    );
    // Nothing was written; the listed principals may, the object id in any case.
    let fed = assertion(SUBJECT, json!(["api://AzureADTokenExchange"]), now() + 600);
    let (status, got) = exchange(&em, &fed).await;
    assert_eq!(status, 200, "{got}");
    let workload = bearer(got["access_token"].as_str().unwrap());
    let (status, got, _) = arm(&em, Method::GET, &package, Some(&workload), None).await;
    assert_eq!(status, 404, "{got}");
    let (status, got, _) = arm(&em, Method::PUT, &package, Some(&workload), Some(body)).await;
    assert_eq!(status, 201, "{got}");
}

#[tokio::test]
async fn the_write_log_names_the_principal_of_each_write() {
    let em = start_a().await;
    em.share_cim("apps", "a.cim");
    let a = bearer(&token(&em, TENANT_A, CLIENT_A, SECRET_A).await);
    let fed = assertion(SUBJECT, json!(["api://AzureADTokenExchange"]), now() + 600);
    let (_, got) = exchange(&em, &fed).await;
    let workload = bearer(got["access_token"].as_str().unwrap());
    let body = package_body(r"\\fs\apps\apps\a.cim", "1.0.0.0", &["hp-a"]);
    let (status, got, _) = arm(
        &em,
        Method::PUT,
        &package_path("one"),
        Some(&a),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 201, "{got}");
    let (status, got, _) = arm(
        &em,
        Method::PUT,
        &package_path("two"),
        Some(&workload),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{got}");
    let (status, got, _) = arm(
        &em,
        Method::DELETE,
        &package_path("one"),
        Some(&workload),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    let (_, log) = em.get("/_emulator/writes").await;
    let who: Vec<(&str, &str, &str)> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["method"].as_str().unwrap(),
                w["path"].as_str().unwrap().rsplit('/').next().unwrap(),
                w["principal"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("PUT", "one", OID_A),
            ("PUT", "two", OID_FED),
            ("DELETE", "one", OID_FED)
        ]
    );
}

#[tokio::test]
async fn a_world_without_a_tenant_checks_no_token_and_logs_who_it_can() {
    // The identities are there (the token endpoint serves them), but no tenantId.
    let em = TestEmulator::start_with(|c| {
        let mut w = world();
        w.identities = identities();
        c.world = Some(w);
    })
    .await;
    em.share_cim("apps", "a.cim");
    let body = package_body(r"\\fs\apps\apps\a.cim", "1.0.0.0", &["hp-a"]);
    // No token, garbage, another tenant's, another subscription: all as before.
    assert_eq!(em.put(&package_path("anon"), body.clone()).await.0, 201);
    let (status, _, _) = arm(
        &em,
        Method::GET,
        &pool_id("hp-a"),
        Some("Bearer garbage"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let b = bearer(&token(&em, TENANT_B, CLIENT_B, SECRET_B).await);
    let (status, got, _) = arm(
        &em,
        Method::PUT,
        &package_path("by-b"),
        Some(&b),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{got}");
    let (status, _, _) = arm(
        &em,
        Method::GET,
        &format!("/subscriptions/{SUB_B}/providers/Microsoft.DesktopVirtualization/hostPools"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, log) = em.get("/_emulator/writes").await;
    let writes = log["value"].as_array().unwrap();
    assert_eq!(writes.len(), 2);
    assert!(writes[0].get("principal").is_none(), "{}", writes[0]);
    assert_eq!(writes[1]["principal"], OID_B);
}

#[tokio::test]
async fn a_world_without_identities_knows_no_tenant() {
    let em = TestEmulator::start().await;
    refused(
        &ask(&em, TENANT_A, &secret_form(CLIENT_A, SECRET_A)).await,
        400,
        "invalid_request",
        90002,
        &format!("Tenant '{TENANT_A}' not found"),
    );
    // A GET is not the token endpoint.
    let resp = em
        .http
        .get(em.served.token_url(TENANT_A))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn a_world_file_with_identities_loads_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("world.yaml");
    let write = |extra: &str| {
        std::fs::write(
            &path,
            format!("subscription: {SUB}\ntenantId: {TENANT_A}\n{extra}"),
        )
        .unwrap();
    };
    write(&format!(
        "identities:\n  - tenantId: {TENANT_A}\n    clientId: {CLIENT_A}\n    objectId: {OID_A}\n    clientSecret: {SECRET_A}\n    federatedSubjects: [{SUBJECT}]\nprincipals: [{OID_A}]\n"
    ));
    let w = World::load(&path).expect("the world loads");
    assert_eq!(w.tenant_id.as_deref(), Some(TENANT_A));
    assert_eq!(w.identities[0].federated_subjects, [SUBJECT]);
    assert!(
        !format!("{w:?}").contains(SECRET_A),
        "a world never prints its secrets"
    );
    // Unknown fields, an identity twice, principals without a tenant are refused.
    write(&format!(
        "identities:\n  - {{tenantId: {TENANT_A}, clientId: {CLIENT_A}, objectId: {OID_A}, password: x}}\n"
    ));
    assert!(
        World::load(&path)
            .unwrap_err()
            .to_string()
            .contains("password")
    );
    write(&format!(
        "identities:\n  - {{tenantId: {TENANT_A}, clientId: {CLIENT_A}, objectId: {OID_A}}}\n  - {{tenantId: {TENANT_A}, clientId: {CLIENT_A}, objectId: {OID_B}}}\n"
    ));
    assert!(
        World::load(&path)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    std::fs::write(
        &path,
        format!("subscription: {SUB}\nprincipals: [{OID_A}]\n"),
    )
    .unwrap();
    assert!(
        World::load(&path)
            .unwrap_err()
            .to_string()
            .contains("principals needs tenantId")
    );
}

/// The controller's own sign-in and ARM client, against the emulator standing for Entra ID
/// (its URL as the authority host) and ARM: a client secret and a workload identity's
/// token file get tokens that ARM takes; a wrong secret, another tenant's identity and an
/// identity the subscription does not list are refused with Entra's and ARM's codes.
#[tokio::test]
async fn the_controllers_own_sign_in_works_against_the_emulator() {
    use appattach_operator::azure::{Credential, Endpoints, Method as SignIn, Secret};
    use appattach_operator::backend::{ArmClient, Auth, Backend};

    let em = start_a().await;
    let endpoints = Endpoints {
        authority_host: em.served.authority_host(),
        imds: "http://127.0.0.1:9/metadata/identity/oauth2/token".into(),
        audience: "https://management.azure.com".into(),
    };
    let client = |method: SignIn| {
        ArmClient::new(
            &em.served.url(),
            SUB,
            RG,
            Auth::Credential(Credential::new(method, endpoints.clone())),
        )
    };
    let secret = |tenant: &str, client: &str, secret: &str| SignIn::ClientSecret {
        tenant_id: tenant.into(),
        client_id: client.into(),
        secret: Secret::new(secret),
    };
    let pool = pool_id("hp-a");

    let by_secret = client(secret(TENANT_A, CLIENT_A, SECRET_A));
    let got = by_secret.get_host_pool(&pool).await.expect("ARM answers");
    assert!(got.is_some());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(
        &file,
        assertion(SUBJECT, json!(["api://AzureADTokenExchange"]), now() + 3600),
    )
    .unwrap();
    let workload = client(SignIn::WorkloadIdentity {
        tenant_id: TENANT_A.into(),
        client_id: CLIENT_FED.into(),
        token_file: file,
    });
    assert!(workload.get_host_pool(&pool).await.unwrap().is_some());

    let refusal = |r: Result<_, appattach_operator::backend::BackendError>| {
        let e = r.map(|_: Option<_>| ()).expect_err("refused");
        format!("{e} {e:?}")
    };
    let wrong = refusal(
        client(secret(TENANT_A, CLIENT_A, "wrong"))
            .get_host_pool(&pool)
            .await,
    );
    assert!(wrong.contains("AADSTS7000215"), "{wrong}");
    assert!(!wrong.contains(SECRET_A), "{wrong}");
    let other_tenant = refusal(
        client(secret(TENANT_B, CLIENT_B, SECRET_B))
            .get_host_pool(&pool)
            .await,
    );
    assert!(
        other_tenant.contains("InvalidAuthenticationTokenTenant"),
        "{other_tenant}"
    );
    let unlisted = refusal(
        client(secret(TENANT_A, CLIENT_OTHER, SECRET_OTHER))
            .get_host_pool(&pool)
            .await,
    );
    assert!(unlisted.contains("AuthorizationFailed"), "{unlisted}");
}
