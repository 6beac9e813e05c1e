//! Switchable faults and request counts, on the admin path.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn next_n_requests_are_throttled_with_retry_after() {
    let em = TestEmulator::start().await;
    let (status, _) = em
        .post("/_emulator/faults", json!({"pathContains": "/hostPools/hp-a", "status": 429, "retryAfterSeconds": 3, "count": 2}))
        .await;
    assert_eq!(status, 201);
    for _ in 0..2 {
        let resp = em
            .http
            .get(format!("{}{}?{API}", em.served.url(), pool_id("hp-a")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "3");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "TooManyRequests");
    }
    assert_eq!(
        em.get(&pool_id("hp-a")).await.0,
        200,
        "the rule retired after two"
    );
    assert_eq!(em.get(&pool_id("hp-b")).await.0, 200);
    assert_eq!(em.get("/_emulator/faults").await.1, json!([]));
}

#[tokio::test]
async fn a_seeded_fraction_fails_about_that_share_and_delays_apply() {
    let em = TestEmulator::start().await;
    em.post(
        "/_emulator/faults",
        json!({"status": 500, "fraction": 0.3, "seed": 42, "method": "GET"}),
    )
    .await;
    let mut failed = 0;
    for _ in 0..200 {
        let (status, body) = em.get(&pool_id("hp-a")).await;
        if status == 500 {
            assert_eq!(body["error"]["code"], "InternalServerError");
            failed += 1;
        }
    }
    assert!((30..=90).contains(&failed), "{failed} of 200 failed");
    assert_eq!(em.delete("/_emulator/faults").await.0, 200);
    em.post("/_emulator/faults", json!({"delayMs": 300, "count": 1}))
        .await;
    let started = Instant::now();
    assert_eq!(em.get(&pool_id("hp-a")).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (status, _) = em.post("/_emulator/faults", json!({"status": 500})).await;
    assert_eq!(
        status, 400,
        "a rule without count or fraction could never fire"
    );
}

#[tokio::test]
async fn requests_are_counted_by_method_and_path_and_can_be_reset() {
    let em = TestEmulator::start().await;
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    em.get(&package_path("pkg-one")).await;
    em.get(&package_path("pkg-one")).await;
    let (_, counts) = em.get("/_emulator/requests").await;
    assert_eq!(counts["total"], 3);
    assert_eq!(counts["writes"], 1);
    assert_eq!(counts["byMethod"]["GET"], 2);
    assert_eq!(counts["byMethod"]["PUT"], 1);
    let path = package_path("pkg-one").to_ascii_lowercase();
    assert!(
        counts["byPath"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["method"] == "GET" && c["path"] == path && c["count"] == 2)
    );
    assert_eq!(em.delete("/_emulator/requests").await.0, 200);
    assert_eq!(em.get("/_emulator/requests").await.1["total"], 0);
}

#[tokio::test]
async fn a_bearer_token_is_checked_when_configured() {
    let em = TestEmulator::start_with(|c| c.token = Some("s3cret".into())).await;
    let url = format!("{}{}?{API}", em.served.url(), pool_id("hp-a"));
    let none = em.http.get(&url).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let wrong = em.http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = em
        .http
        .get(&url)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
}
