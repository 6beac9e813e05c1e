//! A flaky, throttling backend: the controller converges without a hot loop.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_failures_converge_with_bounded_requests() {
    let env = Env::new("flaky_backend", Duration::from_secs(300)).await;
    env.arm(
        reqwest::Method::POST,
        "/_emulator/faults",
        Some(json!({"status": 500, "fraction": 0.15, "seed": 1})),
    )
    .await;
    env.arm(
        reqwest::Method::POST,
        "/_emulator/faults",
        Some(json!({"status": 429, "retryAfterSeconds": 1, "fraction": 0.18, "seed": 2})),
    )
    .await;
    for name in ["one", "two", "three"] {
        env.apply_assigned(name, &[("hp-a", 0), ("hp-b", 1)]).await;
    }
    for name in ["one", "two", "three"] {
        env.wait_package(name, 2, 1).await;
    }
    let counts = env.counts().await;
    env.arm(reqwest::Method::DELETE, "/_emulator/faults", None)
        .await;
    for name in ["one", "two", "three"] {
        assert_eq!(env.roles(name).await.len(), 1);
    }
    let total = counts["total"].as_u64().unwrap();
    // A clean pass of one package costs about ten requests; retries with backoff stay
    // within a small multiple of that, where a hot loop would run into thousands.
    assert!(
        total < 400,
        "{total} backend requests for three packages: {counts}"
    );
}
