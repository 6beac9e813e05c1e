//! The controller signing in to the backend with Entra ID tokens.

use appattach_operator::azure::{Cloud, Credential, Endpoints, Method, Secret};
use appattach_operator::backend::Auth;

use crate::entra::{CLIENT, Entra, SECRET, TENANT};
use crate::harness::Env;

#[tokio::test]
async fn a_refused_token_is_dropped_and_the_controller_recovers_with_a_fresh_one() {
    let entra = Entra::start().await;
    // The first token handed out is one the backend no longer accepts (expired, revoked).
    entra.lock().tokens = ["expired-token".to_string(), "good-token".to_string()].into();
    let mut env = Env::with_token("azure-token", "good-token").await;
    let mut endpoints = Endpoints::of(Cloud::Public, &Default::default());
    endpoints.authority_host = entra.url.clone();
    let credential = Credential::new(
        Method::ClientSecret {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            secret: Secret::new(SECRET),
        },
        endpoints,
    );
    env.stop_controller().await;
    env.auth = Auth::Credential(credential);
    env.start_controller();
    env.apply_assigned("signed", &[("hp-a", 0)]).await;
    env.wait_package("signed", 1, 1).await;
    assert_eq!(
        entra.lock().requests.len(),
        2,
        "signed in again once, after the 401"
    );
    let counts = env.counts().await;
    assert!(
        counts["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["method"] == "PUT"),
        "{counts}"
    );
}

#[tokio::test]
async fn a_credential_that_stops_working_makes_packages_not_ready_with_backend_auth_failed() {
    let entra = Entra::start().await;
    let mut env = Env::with_token("azure-refused", "good-token").await;
    let mut endpoints = Endpoints::of(Cloud::Public, &Default::default());
    endpoints.authority_host = entra.url.clone();
    let secret = "a-revoked-secret-never-to-be-shown";
    let credential = Credential::new(
        Method::ClientSecret {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            secret: Secret::new(secret),
        },
        endpoints,
    );
    env.stop_controller().await;
    env.auth = Auth::Credential(credential);
    env.start_controller();
    env.apply_assigned("refused", &[("hp-a", 0)]).await;
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "refused",
            "Ready",
            "False",
            Some("BackendAuthFailed"),
        )
        .await;
    let text = obj["status"].to_string();
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains(secret), "{text}");
}
