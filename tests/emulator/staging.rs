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

/// An emulator with image `a.vhdx` on the share and package `pkg-one` (1.0.0.0) on hp-a.
async fn one_package_on_hp_a() -> TestEmulator {
    let em = TestEmulator::start().await;
    em.share_file("a.vhdx");
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.vhdx", "1.0.0.0", &["hp-a"]),
    )
    .await;
    em
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

#[tokio::test]
async fn a_staging_fault_names_the_session_host_as_arm_does() {
    let em = one_package_on_hp_a().await;
    // The session host's resource name, as the world file and ARM spell it.
    let (status, body) = em
        .post(
            "/_emulator/staging-faults",
            json!({"sessionHost": "a-0.contoso.com", "error": "the share is unreachable"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, summary) = em.post("/_emulator/stage?hostPool=hp-a", json!({})).await;
    let failed = summary["failedHosts"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{summary}");
    assert!(
        failed[0].as_str().unwrap().ends_with("/a-0.contoso.com"),
        "{summary}"
    );
    let (_, host) = em
        .get(&format!("{}/sessionHosts/a-0.contoso.com", pool_id("hp-a")))
        .await;
    let check = &host["properties"]["sessionHostHealthCheckResults"][0];
    assert_eq!(check["healthCheckResult"], "HealthCheckFailed", "{host}");
    assert!(
        check["additionalFailureDetails"]["message"]
            .as_str()
            .unwrap()
            .contains("the share is unreachable"),
        "{host}"
    );
    let (_, other) = em
        .get(&format!("{}/sessionHosts/a-1.contoso.com", pool_id("hp-a")))
        .await;
    assert_eq!(
        other["properties"]["sessionHostHealthCheckResults"][0]["healthCheckResult"],
        "HealthCheckSucceeded",
        "{other}"
    );
}

#[tokio::test]
async fn a_staging_fault_takes_any_case_and_the_short_host_name() {
    let em = TestEmulator::start().await;
    em.share_file("a.vhdx");
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.vhdx", "1.0.0.0", &["hp-a", "hp-b"]),
    )
    .await;
    for name in ["A-1.Contoso.COM", "b-0"] {
        let (status, body) = em
            .post(
                "/_emulator/staging-faults",
                json!({"sessionHost": name, "error": "disk full"}),
            )
            .await;
        assert_eq!(status, 204, "{name}: {body}");
    }
    let (_, summary) = em.post("/_emulator/stage", json!({})).await;
    let mut failed: Vec<String> = summary["failedHosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    failed.sort();
    assert_eq!(failed, ["a-1.contoso.com", "b-0.contoso.com"], "{summary}");
}

#[tokio::test]
async fn a_staging_fault_for_a_host_that_does_not_exist_is_refused_with_the_hosts_that_do() {
    let em = TestEmulator::start().await;
    for name in [
        "fin-0.contoso.com",
        "a-0.contoso",
        "a-0.fabrikam.com",
        "hp-b/a-0.contoso.com",
    ] {
        let (status, body) = em
            .post(
                "/_emulator/staging-faults",
                json!({"sessionHost": name, "error": "disk full"}),
            )
            .await;
        assert_eq!(status, 404, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("'{name}'")), "{message}");
        for host in ["a-0.contoso.com", "a-1.contoso.com", "b-0.contoso.com"] {
            assert!(message.contains(host), "{message}");
        }
    }
    let (status, body) = em
        .post(
            "/_emulator/staging-faults",
            json!({"sessionHost": " ", "error": "disk full"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sessionHost is required"),
        "{body}"
    );
    // Nothing was armed: every host stages.
    em.share_file("a.vhdx");
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.vhdx", "1.0.0.0", &["hp-a", "hp-b"]),
    )
    .await;
    let (_, summary) = em.post("/_emulator/stage", json!({})).await;
    assert_eq!(summary["failedHosts"], json!([]), "{summary}");
}

#[tokio::test]
async fn a_short_host_name_two_pools_share_is_refused_until_the_pool_is_named() {
    let em = TestEmulator::start_with(|c| {
        let world = c.world.as_mut().unwrap();
        let mut twin = world.host_pools[0].session_hosts[0].clone();
        twin.name = "a-0.fabrikam.com".into();
        world.host_pools[1].session_hosts.push(twin);
    })
    .await;
    let (status, body) = em
        .post(
            "/_emulator/staging-faults",
            json!({"sessionHost": "a-0", "error": "disk full"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    for host in ["hp-a/a-0.contoso.com", "hp-b/a-0.fabrikam.com"] {
        assert!(message.contains(host), "{message}");
    }
    let (status, body) = em
        .post(
            "/_emulator/staging-faults",
            json!({"sessionHost": "hp-b/A-0.fabrikam.com", "error": "disk full"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
}

/// A host shut down takes no session, stages nothing and reports nothing; started, it
/// runs its health check at the next round and reports the images it finds.
#[tokio::test]
async fn a_host_shut_down_reports_nothing_until_it_starts_again() {
    let em = one_package_on_hp_a().await;
    let host = format!("{}/sessionHosts/a-0.contoso.com", pool_id("hp-a"));
    let power = |host: &'static str, running: bool| {
        em.post(
            "/_emulator/power",
            json!({"sessionHost": host, "running": running}),
        )
    };
    let (status, body) = power("a-0", false).await;
    assert_eq!(status, 204, "{body}");
    let (_, summary) = em.post("/_emulator/stage?hostPool=hp-a", json!({})).await;
    assert_eq!(summary["failedHosts"], json!([]), "{summary}");
    let (_, off) = em.get(&host).await;
    assert_eq!(off["properties"]["status"], "Shutdown", "{off}");
    assert_eq!(
        off["properties"]["sessionHostHealthCheckResults"][0]["healthCheckResult"], "Unknown",
        "an image put while the host was off is not reported: {off}"
    );
    // Shut down, it is not a host a user can land on; alice lands on the other one.
    let (status, session) = em
        .post(
            "/_emulator/signin",
            json!({"user": "alice@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    assert!(
        !session.to_string().contains("a-0.contoso.com"),
        "{session}"
    );

    let (status, body) = power("a-0.contoso.com", true).await;
    assert_eq!(status, 204, "{body}");
    em.post("/_emulator/stage?hostPool=hp-a", json!({})).await;
    let (_, on) = em.get(&host).await;
    assert_eq!(on["properties"]["status"], "Available", "{on}");
    assert_eq!(
        on["properties"]["sessionHostHealthCheckResults"][0]["healthCheckResult"],
        "HealthCheckSucceeded",
        "{on}"
    );
    let (status, _) = power("nowhere-0", false).await;
    assert_eq!(status, 404);
}

/// A host made silent reports again once its fault alone is cleared (error null); the
/// other hosts' faults stay.
#[tokio::test]
async fn a_staging_fault_of_one_host_is_cleared_by_a_null_error() {
    let em = one_package_on_hp_a().await;
    for (host, error) in [("a-0", json!("")), ("a-1", json!("disk full"))] {
        let (status, body) = em
            .post(
                "/_emulator/staging-faults",
                json!({"sessionHost": host, "error": error}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let (_, summary) = em.post("/_emulator/stage?hostPool=hp-a", json!({})).await;
    let (_, reports) = em.get("/_emulator/reports").await;
    let reported = |reports: &serde_json::Value, host: &str| {
        reports["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["sessionHost"].as_str().unwrap().ends_with(host))
            .count()
    };
    assert_eq!(reported(&reports, "/a-0.contoso.com"), 0, "{summary}");
    assert_eq!(reported(&reports, "/a-1.contoso.com"), 1, "{reports}");
    let (status, body) = em
        .post(
            "/_emulator/staging-faults",
            json!({"sessionHost": "a-0", "error": null}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, summary) = em.post("/_emulator/stage?hostPool=hp-a", json!({})).await;
    let (_, reports) = em.get("/_emulator/reports").await;
    let a0: Vec<&serde_json::Value> = reports["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["sessionHost"]
                .as_str()
                .unwrap()
                .ends_with("/a-0.contoso.com")
        })
        .collect();
    assert_eq!(a0.len(), 1, "{reports}");
    assert_eq!(a0[0]["staged"][0]["staged"], true, "{reports}");
    assert!(
        a0[0]["after"].as_u64().unwrap() >= 1,
        "placed after the package's PUT"
    );
    // a-1 still fails.
    assert_eq!(
        summary["failedHosts"].as_array().unwrap().len(),
        1,
        "{summary}"
    );
}
