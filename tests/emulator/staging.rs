//! Session hosts stage every active package their pool references, and report it in
//! their AppAttachHealthCheck.

use serde_json::{Value, json};

use crate::support::*;

async fn health(em: &TestEmulator, pool: &str) -> Vec<(String, String, Value)> {
    let (_, list) = em.get(&format!("{}/sessionHosts", pool_id(pool))).await;
    list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let check = &h["properties"]["sessionHostHealthCheckResults"][0];
            (
                h["properties"]["status"].as_str().unwrap().to_string(),
                check["healthCheckResult"].as_str().unwrap().to_string(),
                check["additionalFailureDetails"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_complete_cimfs_image_stages_on_every_host_of_the_pool() {
    let em = TestEmulator::start().await;
    em.share_cim("expenses", "Contoso.Expenses_1.0.0.0.cim");
    em.create_package(
        "pkg-one",
        package_body(
            r"\\fs\apps\expenses\Contoso.Expenses_1.0.0.0.cim",
            "1.0.0.0",
            &["hp-a"],
        ),
    )
    .await;
    let before = health(&em, "hp-a").await;
    assert!(
        before.iter().all(|(_, r, _)| r == "Unknown"),
        "nothing staged before a run: {before:?}"
    );
    let (status, summary) = em.post("/_emulator/stage?hostPool=hp-a", json!({})).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["sessionHosts"], 2);
    assert_eq!(summary["failedHosts"], json!([]));
    for (status, result, details) in health(&em, "hp-a").await {
        assert_eq!(
            (status.as_str(), result.as_str()),
            ("Available", "HealthCheckSucceeded")
        );
        assert!(details["lastHealthCheckDateTime"].is_string());
    }
    let (_, staged) = em.get("/_emulator/staging").await;
    let hosts = staged.as_object().unwrap();
    assert_eq!(hosts.len(), 2);
    assert!(
        hosts
            .values()
            .all(|v| v[0]["staged"] == true && v[0]["version"] == "1.0.0.0")
    );
}

#[tokio::test]
async fn a_missing_or_incomplete_image_fails_the_health_check_with_the_reason() {
    let em = TestEmulator::start().await;
    em.share_file("broken/Broken.cim"); // no objectid_* or region_* beside it
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\missing.vhdx", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let mut broken = package_body(r"\\fs\apps\broken\Broken.cim", "1.0.0.0", &["hp-b"]);
    broken["properties"]["failHealthCheckOnStagingFailure"] = json!("Unhealthy");
    em.create_package("pkg-two", broken).await;
    let (_, summary) = em.post("/_emulator/stage", json!({})).await;
    assert_eq!(summary["failedHosts"].as_array().unwrap().len(), 3);
    for (status, result, details) in health(&em, "hp-a").await {
        assert_eq!(
            (status.as_str(), result.as_str()),
            ("NeedsAssistance", "HealthCheckFailed")
        );
        assert!(
            details["message"]
                .as_str()
                .unwrap()
                .contains("missing.vhdx"),
            "{details}"
        );
    }
    for (status, result, details) in health(&em, "hp-b").await {
        assert_eq!(
            (status.as_str(), result.as_str()),
            ("Unavailable", "HealthCheckFailed")
        );
        assert!(
            details["message"].as_str().unwrap().contains("objectid_"),
            "{details}"
        );
    }
    // Fixing the share fixes the hosts at the next run.
    em.share_file("missing.vhdx");
    em.post("/_emulator/stage?hostPool=hp-a", json!({})).await;
    assert!(
        health(&em, "hp-a")
            .await
            .iter()
            .all(|(s, r, _)| s == "Available" && r == "HealthCheckSucceeded")
    );
}

#[tokio::test]
async fn inactive_packages_and_do_not_fail_packages_do_not_fail_hosts() {
    let em = TestEmulator::start().await;
    let mut inactive = package_body(r"\\fs\apps\gone.vhdx", "1.0.0.0", &["hp-a"]);
    inactive["properties"]["image"]["isActive"] = json!(false);
    em.create_package("pkg-one", inactive).await;
    let mut tolerant = package_body(r"\\fs\apps\gone2.vhdx", "1.0.0.0", &["hp-a"]);
    tolerant["properties"]["failHealthCheckOnStagingFailure"] = json!("DoNotFail");
    em.create_package("pkg-two", tolerant).await;
    em.post("/_emulator/stage", json!({})).await;
    assert!(
        health(&em, "hp-a")
            .await
            .iter()
            .all(|(s, r, _)| s == "Available" && r == "HealthCheckSucceeded")
    );
}

#[tokio::test]
async fn staging_runs_on_its_own_tick() {
    let em = TestEmulator::start_with(|c| {
        c.staging_interval = Some(std::time::Duration::from_millis(50))
    })
    .await;
    em.share_file("a.vhdx");
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.vhdx", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if health(&em, "hp-a")
            .await
            .iter()
            .all(|(_, r, _)| r == "HealthCheckSucceeded")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tick never staged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
