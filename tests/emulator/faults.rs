//! Switchable faults and request counts, on the admin path.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

#[tokio::test]
async fn applied_writes_are_logged_in_order_with_their_bodies() {
    let em = TestEmulator::start().await;
    let body = package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]);
    em.create_package("pkg-one", body.clone()).await;
    em.get(&package_path("pkg-one")).await;
    // Refused writes, by a fault or by validation, are not in it.
    em.post(
        "/_emulator/faults",
        json!({"method": "PATCH", "status": 503, "count": 1}),
    )
    .await;
    let patch = json!({"properties": {"hostPoolReferences": []}});
    assert_eq!(
        em.patch(&package_path("pkg-one"), patch.clone()).await.0,
        503
    );
    assert_eq!(em.put(&package_path("pkg-two"), json!({})).await.0, 400);
    assert_eq!(
        em.patch(&package_path("pkg-one"), patch.clone()).await.0,
        200
    );
    assert_eq!(em.delete(&package_path("pkg-one")).await.0, 200);
    // The request counts' reset leaves it alone.
    assert_eq!(em.delete("/_emulator/requests").await.0, 200);

    let (status, log) = em.get("/_emulator/writes").await;
    assert_eq!(status, 200);
    let writes = log["value"].as_array().unwrap();
    let path = package_path("pkg-one").to_ascii_lowercase();
    let seen: Vec<(&str, &str, &Value)> = writes
        .iter()
        .map(|w| {
            (
                w["method"].as_str().unwrap(),
                w["path"].as_str().unwrap(),
                &w["body"],
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT", path.as_str(), &body),
            ("PATCH", path.as_str(), &patch),
            ("DELETE", path.as_str(), &Value::Null),
        ],
        "{log}"
    );
    assert_eq!(writes[0]["status"], 201);
    let seqs: Vec<u64> = writes.iter().map(|w| w["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(
        writes[0]["at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );

    assert_eq!(em.delete("/_emulator/writes").await.0, 200);
    assert_eq!(em.get("/_emulator/writes").await.1, json!({"value": []}));
    em.create_package("pkg-one", body).await;
    assert_eq!(em.get("/_emulator/writes").await.1["value"][0]["seq"], 4);
}

#[tokio::test]
async fn a_write_held_after_it_took_effect_is_applied_before_its_answer() {
    let em = TestEmulator::start().await;
    let (status, body) = em
        .post(
            "/_emulator/faults",
            json!({"method": "PUT", "pathContains": "appAttachPackages/held", "delayAfterMs": 600_000, "count": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let url = format!("{}{}?{API}", em.served.url(), package_path("held"));
    let put = em
        .http
        .put(url)
        .json(&package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]))
        .send();
    let put = tokio::spawn(put);
    // The caller still waits for its answer, and the write is already there.
    let started = Instant::now();
    loop {
        if em.get(&package_path("held")).await.0 == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!put.is_finished());
    let (_, log) = em.get("/_emulator/writes").await;
    assert_eq!(log["value"][0]["method"], "PUT", "{log}");
    assert_eq!(
        em.get("/_emulator/faults").await.1,
        json!([]),
        "the rule retired"
    );
    put.abort();
    let (status, _) = em
        .post(
            "/_emulator/faults",
            json!({"status": 500, "delayAfterMs": 10, "count": 1}),
        )
        .await;
    assert_eq!(status, 400, "a refused request is never served");
}
