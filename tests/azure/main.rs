//! Signing in to Azure, against local stand-ins that check each request as Entra ID and
//! the instance metadata endpoint do.

mod entra;

use std::sync::Arc;
use std::time::{Duration, Instant};

use appattach_operator::azure::{Cloud, Credential, Endpoints, Method, Secret};
use entra::{CLIENT, Entra, JWT_BEARER, SCOPE, SECRET, TENANT};

fn endpoints(entra: &Entra) -> Endpoints {
    let mut e = Endpoints::of(Cloud::Public, &Default::default());
    e.authority_host = entra.url.clone();
    e.imds = entra.imds();
    e
}

fn client_secret(secret: &str) -> Method {
    Method::ClientSecret {
        tenant_id: TENANT.into(),
        client_id: CLIENT.into(),
        secret: Secret::new(secret),
    }
}

/// Polls `f` every 50 ms until it holds; fails after 20 s naming `what`.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_secret_sign_in_sends_the_published_form_and_caches_the_token() {
    let entra = Entra::start().await;
    let c = Credential::new(client_secret(SECRET), endpoints(&entra));
    assert_eq!(c.token().await.unwrap().expose(), "tok-1");
    assert_eq!(c.token().await.unwrap().expose(), "tok-1", "cached");
    let requests = entra.lock().requests.clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["grant_type"], "client_credentials");
    assert_eq!(requests[0]["scope"], SCOPE);
    assert_eq!(requests[0]["client_id"], CLIENT);

    // A wrong secret: refused with Entra's code, and the message does not carry the secret.
    let wrong = Credential::new(client_secret("not-the-secret"), endpoints(&entra));
    let e = wrong.token().await.unwrap_err().to_string();
    assert!(
        e.contains("invalid_client") && e.contains("AADSTS7000215"),
        "{e}"
    );
    assert!(!e.contains("not-the-secret"), "{e}");
}

#[tokio::test]
async fn workload_identity_presents_the_federated_token_and_picks_up_a_rotated_one() {
    let entra = Entra::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "eyJ.first.jwt\n").unwrap();
    {
        let mut e = entra.lock();
        e.assertion = Some("eyJ.first.jwt".into());
        e.expires_in = 2; // refreshed after half its life
    }
    let c = Credential::new(
        Method::WorkloadIdentity {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            token_file: file.clone(),
        },
        endpoints(&entra),
    );
    assert_eq!(c.token().await.unwrap().expose(), "tok-1");
    let first = entra.lock().requests[0].clone();
    assert_eq!(first["client_assertion_type"], JWT_BEARER);
    assert_eq!(first["client_assertion"], "eyJ.first.jwt");
    assert!(!first.contains_key("client_secret"));

    // The kubelet rotates the file; the next refresh presents the new token.
    std::fs::write(&file, "eyJ.second.jwt").unwrap();
    entra.lock().assertion = Some("eyJ.second.jwt".into());
    eventually("a token got with the rotated assertion", || async {
        c.token().await.is_ok_and(|t| t.expose() != "tok-1")
    })
    .await;
    assert_eq!(
        entra.lock().requests.last().unwrap()["client_assertion"],
        "eyJ.second.jwt"
    );

    // An unreadable file is named.
    std::fs::remove_file(&file).unwrap();
    let c = Credential::new(
        Method::WorkloadIdentity {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            token_file: file.clone(),
        },
        endpoints(&entra),
    );
    let e = c.token().await.unwrap_err().to_string();
    assert!(
        e.contains("AZURE_FEDERATED_TOKEN_FILE") && e.contains(&file.display().to_string()),
        "{e}"
    );
}

#[tokio::test]
async fn managed_identity_asks_the_metadata_endpoint_with_its_header_and_client_id() {
    let entra = Entra::start().await;
    let c = Credential::new(
        Method::ManagedIdentity {
            client_id: Some(CLIENT.into()),
        },
        endpoints(&entra),
    );
    assert_eq!(c.token().await.unwrap().expose(), "tok-1");
    let q = entra.lock().requests[0].clone();
    assert_eq!(q["api-version"], "2018-02-01");
    assert_eq!(q["resource"], "https://management.azure.com/");
    assert_eq!(q["client_id"], CLIENT);
    let other = Credential::new(
        Method::ManagedIdentity {
            client_id: Some("00000000-0000-0000-0000-00000000dead".into()),
        },
        endpoints(&entra),
    );
    let e = other.token().await.unwrap_err().to_string();
    assert!(
        e.contains("instance metadata endpoint") && e.contains("Identity not found"),
        "{e}"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh_and_garbage_is_refused() {
    let entra = Entra::start().await;
    entra.lock().delay = Duration::from_millis(300);
    let c = Credential::new(client_secret(SECRET), endpoints(&entra));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.token().await.unwrap().expose().to_string() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "tok-1");
    }
    assert_eq!(
        entra.lock().requests.len(),
        1,
        "one request for twenty callers"
    );

    entra.lock().garbage = Some("<html>proxy error</html>".into());
    let fresh = Credential::new(client_secret(SECRET), endpoints(&entra));
    let e = fresh.token().await.unwrap_err().to_string();
    assert!(e.contains("not a token response"), "{e}");
}

/// Runs `appattach controller --cloud AzurePublicCloud` with these variables; it must
/// refuse to start. Returns what it printed.
async fn refused_start(entra: &Entra, vars: &[(&str, &str)]) -> String {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"));
    cmd.args([
        "controller",
        "--cloud",
        "AzurePublicCloud",
        "--subscription",
        "00000000-0000-0000-0000-000000000000",
        "--resource-group",
        "rg-avd",
        "--imds-endpoint",
        &entra.imds(),
    ])
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("APPATTACH_LOG", "trace")
    .env("AZURE_AUTHORITY_HOST", &entra.url)
    .kill_on_drop(true);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the controller stopped")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "it started: {text}");
    text
}

#[tokio::test]
async fn the_controller_refuses_to_start_without_a_working_credential_and_never_logs_the_secret() {
    let entra = Entra::start().await;
    // A refused secret: the reason is Entra's, the secret is nowhere in the output.
    let wrong = "wr0ng-s3cret-that-must-not-leak";
    let text = refused_start(
        &entra,
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_CLIENT_SECRET", wrong),
        ],
    )
    .await;
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains(wrong), "the secret leaked: {text}");
    // A missing variable is named.
    let text = refused_start(
        &entra,
        &[
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/token"),
        ],
    )
    .await;
    assert!(text.contains("AZURE_TENANT_ID is not set"), "{text}");
    // An unreadable federated token file is named.
    let text = refused_start(
        &entra,
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/token"),
        ],
    )
    .await;
    assert!(text.contains("/nonexistent/token"), "{text}");
    // An unknown cloud is refused with the known ones.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"));
    let out = cmd
        .args([
            "controller",
            "--cloud",
            "AzureMoonCloud",
            "--subscription",
            "s",
            "--resource-group",
            "rg",
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("AzureUSGovernment"),
        "{text}"
    );
    // A token endpoint that answers garbage.
    entra.lock().garbage = Some("not json".into());
    let text = refused_start(
        &entra,
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_CLIENT_SECRET", SECRET),
        ],
    )
    .await;
    assert!(text.contains("not a token response"), "{text}");
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
}

#[tokio::test]
async fn the_client_reports_what_arm_says_is_left_and_its_own_waits() {
    use appattach_operator::backend::throttle::Limits;
    use appattach_operator::backend::{ArmClient, Auth, Backend, BackendError};
    use appattach_operator::controller::metrics::Metrics;
    use appattach_operator::emulator::{self, Emulator};
    let world: emulator::World = serde_yaml_ng::from_str(
        "subscription: 00000000-0000-0000-0000-000000000000\nresourceGroup: rg-avd\nhostPools: [{name: hp, location: westeurope, identityProvider: EntraID, sessionHosts: []}]\n",
    )
    .unwrap();
    let served = Emulator::start(emulator::Config {
        world: Some(world),
        shares: vec![],
        state_dir: None,
        token: None,
        staging_interval: None,
        arm_budget: None,
    })
    .await
    .unwrap();
    let client = ArmClient::new(
        &served.url(),
        "00000000-0000-0000-0000-000000000000",
        "rg-avd",
        Auth::None,
    )
    .with_limits(Limits {
        reads: (1, 0.01),
        writes: (1, 0.01),
        deletes: (1, 0.01),
    });
    let metrics = Metrics::new(Some(client.metrics()));
    let pool = client.host_pool_id("hp");
    assert!(client.get_host_pool(&pool).await.unwrap().is_some());
    // The budget of one read is spent: the next fails at once, saying when to come back.
    match client.get_host_pool(&pool).await {
        Err(BackendError::Budget(wait)) => assert!(wait > Duration::from_secs(1), "{wait:?}"),
        other => panic!("expected the budget to refuse, got {other:?}"),
    }
    let text = metrics.render();
    assert!(
        text.contains(r#"appattach_arm_ratelimit_remaining{kind="reads",target="operator"} 11999"#),
        "{text}"
    );
    assert!(
        text.contains(r#"appattach_arm_throttled_total{source="client",target="operator"} 1"#),
        "{text}"
    );
}
