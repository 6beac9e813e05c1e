//! Version changes rolled out ring by ring: the gate on the session hosts' staging health,
//! the soak, rollback, users' sessions, and restarts at every kind of step.

use serde_json::{Value, json};

use crate::harness::{Env, poll};
use crate::rollout_support::*;
use crate::support::set;

async fn health_checked_at(env: &Env, pool: &str) -> Vec<jiff::Timestamp> {
    session_hosts(env, pool)
        .await
        .iter()
        .map(|h| {
            time(&h["properties"]["sessionHostHealthCheckResults"][0]["additionalFailureDetails"]
                ["lastHealthCheckDateTime"])
        })
        .collect()
}

#[tokio::test]
async fn a_good_version_moves_ring_by_ring_and_the_old_image_stays_while_sessions_use_it() {
    let env = Env::staging("rollout-good").await;
    ready_at_v1(&env, "roll", json!({"soak": "1s"})).await;
    let old = env.backend_name("roll");
    let new = versioned(&env, "roll", "2.0.0.0");
    let s0 = env.signin("alice@contoso.com", "hp-r0").await;
    let s2 = env.signin("alice@contoso.com", "hp-r2").await;
    assert_eq!(s0["packages"][0]["version"], "1.0.0.0");

    put_image(&env, "roll", "2.0.0.0");
    env.ns
        .apply(&manifest("roll", "2.0.0.0", json!({"soak": "1s"})))
        .await
        .unwrap();

    // Ring 0 alone runs the new version, and soaks only after both its hosts staged it.
    let st = wait_rollout(&env, "roll", "ring 0 soaking", |r| step(r, "Soaking", 0)).await;
    let soak_started = time(&st["rollout"]["stepStartedAt"]);
    assert_eq!(refs(&env, &new).await.unwrap(), ["hp-r0"]);
    assert_eq!(refs(&env, &old).await.unwrap(), ["hp-r1", "hp-r2"]);
    let switched = time(&st["hostPools"][0]["switchedAt"]);
    // Each host reported since the switch (a later report, once the old version left
    // the pool, may follow the gate: the gate counted the first).
    for checked in health_checked_at(&env, "hp-r0").await {
        assert!(switched <= checked, "{st}");
    }
    assert_eq!(st["hostPools"][0]["stagedHosts"], 2, "{st}");
    let metrics = env.metrics.render();
    let series = format!(
        r#"appattach_rollout_step{{namespace="{}",name="roll",step="Soaking"}} 1"#,
        env.ns.name
    );
    assert!(metrics.contains(&series), "{metrics}");
    assert_eq!(st["targetVersion"], "2.0.0.0");
    assert_eq!(st["currentVersion"], "1.0.0.0");
    assert_eq!(
        env.wait_condition(
            "AppAttachPackage",
            "roll",
            "Ready",
            "Unknown",
            Some("RolloutInProgress")
        )
        .await["status"]["rollout"]["target"]["version"],
        "2.0.0.0"
    );

    let st = wait_rollout(&env, "roll", "complete", |r| at(r, "Complete")).await;
    // Ring 1 switched only after ring 0's soak.
    let ring1 = st["hostPools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hp-r1")
        .unwrap()
        .clone();
    assert!(
        time(&ring1["switchedAt"]) >= soak_started + jiff::SignedDuration::from_secs(1),
        "{st}"
    );
    assert_eq!(refs(&env, &new).await.unwrap(), ["hp-r0", "hp-r1", "hp-r2"]);
    assert_eq!(
        refs(&env, &old).await,
        None,
        "the old backend package is removed"
    );
    assert_eq!(st["currentVersion"], "2.0.0.0");
    assert_eq!(st["backendName"], new.as_str());
    assert_eq!(st["history"][0]["result"], "Complete");
    assert_eq!(st["history"][0]["fromVersion"], "1.0.0.0");
    assert_eq!(
        env.roles("roll").await.len(),
        0,
        "the old package's roles went with it"
    );
    env.wait_ready("AppAttachPackage", "roll").await;
    env.wait_condition(
        "AppAttachPackage",
        "roll",
        "Progressing",
        "True",
        Some("RolloutComplete"),
    )
    .await;

    // Two sessions signed in with 1.0.0.0: its image is retained until both end.
    let retained = |st: &Value| st["retainedImages"].clone();
    assert_eq!(retained(&st)[0]["path"], image("roll", "1.0.0.0"));
    assert_eq!(retained(&st)[0]["sessions"], 2, "{st}");
    let fresh = env.signin("alice@contoso.com", "hp-r0").await;
    assert_eq!(fresh["packages"][0]["version"], "2.0.0.0");
    sign_out(&env, &s0).await;
    poll("one retained session", || async {
        let st = status(&env, "roll").await;
        (retained(&st)[0]["sessions"] == 1)
            .then_some(())
            .ok_or(format!("{st}"))
    })
    .await;
    sign_out(&env, &s2).await;
    poll("no retained image", || async {
        let st = status(&env, "roll").await;
        st["retainedImages"]
            .is_null()
            .then_some(())
            .ok_or(format!("{st}"))
    })
    .await;

    let reasons: Vec<String> = env
        .events("roll")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in [
        "RolloutStarted",
        "RingSwitched",
        "RingStaged",
        "RolloutComplete",
    ] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
}

#[tokio::test]
async fn a_missing_image_fails_ring_zero_and_rolls_back_without_touching_later_rings() {
    let env = Env::staging("rollout-missing").await;
    ready_at_v1(&env, "miss", json!({"soak": "1s"})).await;
    let old = env.backend_name("miss");
    let new = versioned(&env, "miss", "2.0.0.0");
    env.reset_counts().await;

    // 2.0.0.0's image is not on the share.
    let obj = version_fails(&env, "miss", "2.0.0.0", json!({"soak": "1s"})).await;
    let st = &obj["status"];
    let message = st["rollout"]["message"].as_str().unwrap();
    for host in ["r0-0", "r0-1"] {
        assert!(message.contains(host), "{message}");
    }
    assert!(message.contains(&image("miss", "2.0.0.0")), "{message}");
    assert_eq!(st["rollout"]["phase"], "Failed");
    assert_eq!(st["currentVersion"], "1.0.0.0");
    assert_eq!(st["history"][0]["result"], "Failed");
    env.wait_condition(
        "AppAttachPackage",
        "miss",
        "Ready",
        "False",
        Some("RolloutFailed"),
    )
    .await;
    env.wait_warning("miss", "RolloutFailed").await;
    let (ok, text) = cli(&env, &["status", "miss"]).await;
    assert!(
        !ok && text.contains("failed") && text.contains("r0-0"),
        "{text}"
    );

    // Every pool is back on the old package; the new one is gone and was only ever
    // written once (with ring 0 alone).
    assert_eq!(refs(&env, &old).await.unwrap(), ["hp-r0", "hp-r1", "hp-r2"]);
    assert_eq!(refs(&env, &new).await, None);
    let counts = env.counts().await;
    let applied = |method: &str, suffix: &str| -> u64 {
        counts["applied"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["method"] == method && c["path"].as_str().unwrap().ends_with(suffix))
            .map(|c| c["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        applied("PUT", &format!("appattachpackages/{new}")),
        1,
        "{counts}"
    );
    assert_eq!(
        applied("DELETE", &format!("appattachpackages/{new}")),
        1,
        "{counts}"
    );
    // Rings 1 and 2 never switched.
    assert_not_switched(st, &["hp-r1", "hp-r2"]);

    // With the image now on the share, a pass without a spec change does not try again.
    put_image(&env, "miss", "2.0.0.0");
    // Two passes, each triggered by an annotation: once the second has started, the first
    // has ended (passes of one object never overlap).
    for poke in ["1", "2"] {
        let before = env.passes("AppAttachPackage");
        env.ns
            .apply(&set(
                manifest("miss", "2.0.0.0", json!({"soak": "1s"})),
                "/metadata/annotations",
                json!({ "example.com/poke": poke }),
            ))
            .await
            .unwrap();
        poll("a pass after the annotation", || async {
            let now = env.passes("AppAttachPackage");
            (now > before).then_some(()).ok_or(format!("{now} passes"))
        })
        .await;
    }
    let st = status(&env, "miss").await;
    assert_eq!(st["rollout"]["phase"], "Failed", "{st}");
    assert_eq!(st["rollout"]["revision"], 1, "{st}");
    assert_eq!(refs(&env, &new).await, None, "{st}");

    // Once the spec changes again, it is tried again and passes.
    env.ns
        .apply(&manifest(
            "miss",
            "2.0.0.0",
            json!({"soak": "1s", "notifyUsers": true}),
        ))
        .await
        .unwrap();
    let st = wait_rollout(&env, "miss", "complete", |r| at(r, "Complete")).await;
    assert_eq!(st["rollout"]["revision"], 2);
    assert_eq!(st["currentVersion"], "2.0.0.0");
}

/// The image of 2.0.0.0 holds a package changed after signing (Microsoft's test package
/// whose block map was altered): the session hosts of ring 0 refuse to stage it with the
/// error Windows gives, the gate fails, and the rollout rolls back before ring 1.
#[tokio::test]
async fn a_package_changed_after_signing_fails_ring_zero_with_the_hosts_error() {
    let env = Env::staging("rollout-tampered").await;
    ready_at_v1(&env, "tamp", json!({"soak": "1s"})).await;
    let tampered = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/msix-packaging/SignedTamperedBlockMap-TRUST_E_BAD_DIGEST.appx");
    put_real_image(&env, "tamp", "2.0.0.0", &tampered);
    let obj = version_fails(&env, "tamp", "2.0.0.0", json!({"soak": "1s"})).await;
    let st = &obj["status"];
    let message = st["rollout"]["message"].as_str().unwrap();
    assert!(message.contains("r0-0"), "{message}");
    assert!(
        message.contains("TRUST_E_BAD_DIGEST (0x80096010)"),
        "{message}"
    );
    assert!(message.contains("AppxBlockMap.xml (AXBM)"), "{message}");
    assert_eq!(st["currentVersion"], "1.0.0.0");
    assert_not_switched(st, &["hp-r1", "hp-r2"]);
}

#[tokio::test]
async fn a_tolerated_staging_failure_lets_the_rollout_proceed() {
    let env = Env::staging("rollout-tolerated").await;
    let rollout = json!({"soak": "1s", "maxStagingFailures": 1});
    ready_at_v1(&env, "tol", rollout.clone()).await;
    let (code, _) = env
        .arm(
            reqwest::Method::POST,
            "/_emulator/staging-faults",
            Some(json!({"sessionHost": "r0-1", "error": "the share is unreachable"})),
        )
        .await;
    assert_eq!(code, 204);
    put_image(&env, "tol", "2.0.0.0");
    env.ns
        .apply(&manifest("tol", "2.0.0.0", rollout))
        .await
        .unwrap();
    let st = wait_rollout(&env, "tol", "ring 0 soaking", |r| step(r, "Soaking", 0)).await;
    assert!(
        st["rollout"]["message"]
            .as_str()
            .unwrap()
            .contains("1 failed (tolerated)"),
        "{st}"
    );
    assert_eq!(st["hostPools"][0]["failedHosts"], 1, "{st}");
    wait_rollout(&env, "tol", "complete", |r| at(r, "Complete")).await;
}

/// Signs alice in on hp-r0 and hp-r1 at 1.0.0.0, starts the rollout to 2.0.0.0, and signs
/// her in on hp-r0 again once ring 0 switched; returns the three sessions.
async fn sessions_across_a_rollout(env: &Env, name: &str, rollout: Value) -> [Value; 3] {
    ready_at_v1(env, name, rollout.clone()).await;
    let old0 = env.signin("alice@contoso.com", "hp-r0").await;
    let old1 = env.signin("alice@contoso.com", "hp-r1").await;
    put_image(env, name, "2.0.0.0");
    env.ns
        .apply(&manifest(name, "2.0.0.0", rollout))
        .await
        .unwrap();
    wait_rollout(env, name, "ring 0 switched", |r| {
        r["ring"].as_i64().unwrap_or(-1) >= 0 && r["step"] != "Pending" && r["step"] != "Switching"
    })
    .await;
    let new0 = env.signin("alice@contoso.com", "hp-r0").await;
    // Sessions keep the version they signed in with; a new one gets the new version.
    assert_eq!(old0["packages"][0]["version"], "1.0.0.0");
    assert_eq!(new0["packages"][0]["version"], "2.0.0.0");
    [old0, old1, new0]
}

#[tokio::test]
async fn users_keep_their_version_and_each_old_session_is_told_once() {
    let env = Env::staging("rollout-notify").await;
    let [old0, old1, new0] =
        sessions_across_a_rollout(&env, "ntf", json!({"soak": "1s", "notifyUsers": true})).await;
    let st = wait_rollout(&env, "ntf", "complete", |r| at(r, "Complete")).await;
    assert_eq!(st["rollout"]["notifiedSessions"], 2, "{st}");
    let live = live_sessions(&env).await;
    let messages = |s: &Value| {
        live.iter()
            .find(|l| l["id"] == s["sessionId"])
            .map(|l| l["messages"].as_array().cloned().unwrap_or_default())
            .unwrap_or_else(|| panic!("{s} is not live: {live:?}"))
    };
    for old in [&old0, &old1] {
        let m = messages(old);
        assert_eq!(m.len(), 1, "{m:?}");
        let body = m[0]["messageBody"].as_str().unwrap();
        assert!(
            body.contains("1.0.0.0") && body.contains("2.0.0.0"),
            "{body}"
        );
    }
    assert!(
        messages(&new0).is_empty(),
        "a session on the new version is not told"
    );
    // Nobody was logged off without a grace period; the old image stays for them.
    assert_eq!(st["rollout"]["loggedOffSessions"], 0);
    assert_eq!(st["retainedImages"][0]["sessions"], 2, "{st}");
}

#[tokio::test]
async fn the_grace_period_logs_off_only_sessions_on_the_old_version() {
    let env = Env::staging("rollout-grace").await;
    let rollout = json!({"soak": "1s", "sessionGracePeriod": "1s"});
    let [_, _, new0] = sessions_across_a_rollout(&env, "grc", rollout).await;
    wait_rollout(&env, "grc", "complete", |r| at(r, "Complete")).await;
    poll("old sessions logged off", || async {
        let st = status(&env, "grc").await;
        (st["rollout"]["loggedOffSessions"] == 2)
            .then_some(())
            .ok_or(format!("{st}"))
    })
    .await;
    let ids: Vec<String> = live_sessions(&env)
        .await
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [new0["sessionId"].as_str().unwrap()]);
    let st = poll("no retained image", || async {
        let st = status(&env, "grc").await;
        st["retainedImages"]
            .is_null()
            .then_some(st.clone())
            .ok_or(format!("{st}"))
    })
    .await;
    assert_eq!(st["rollout"]["notifiedSessions"], 0);
}

/// The applied writes to each path of one package (its backend packages and their role
/// assignments).
async fn applied_writes(env: &Env, name: &str) -> Vec<(String, String, u64)> {
    let counts = env.counts().await;
    let prefix = env.backend_name(name).to_ascii_lowercase();
    counts["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["path"]
                .as_str()
                .unwrap()
                .contains(&format!("appattachpackages/{prefix}"))
        })
        .map(|c| {
            (
                c["method"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_controller_killed_after_any_kind_of_step_resumes_and_writes_nothing_twice() {
    let mut env = Env::staging("rollout-restart").await;
    for kind in ["Pending", "Switching", "Staging", "Soaking", "Finishing"] {
        let name = format!("k-{}", kind.to_ascii_lowercase());
        let rollout = json!({"soak": "2s", "paused": true});
        ready_at_v1(&env, &name, rollout.clone()).await;
        put_image(&env, &name, "2.0.0.0");
        // Count from here: the rollout's writes only (earlier packages are done by now).
        env.reset_counts().await;
        let held = |on: &str| json!({"method": on, "pathContains": format!("appAttachPackages/{}", env.backend_name(&name)), "status": 429, "retryAfterSeconds": 600, "count": 1});
        if kind == "Staging" {
            let (code, body) = env
                .arm(
                    reqwest::Method::POST,
                    "/_emulator/staging-faults",
                    Some(json!({"sessionHost": "r0-1", "error": ""})),
                )
                .await;
            assert_eq!(code, 204, "{body}");
        }
        env.ns
            .apply(&manifest(&name, "2.0.0.0", rollout))
            .await
            .unwrap();
        wait_rollout(&env, &name, "paused before ring 0", |r| {
            at(r, "Paused") && r["step"] == "Pending"
        })
        .await;
        // The write that would follow the step's intent is refused with a long
        // Retry-After, so the controller sits right after recording the step.
        let hold = match kind {
            "Switching" => Some("PUT"),
            "Finishing" => Some("DELETE"),
            _ => None,
        };
        if let Some(method) = hold {
            let (code, body) = env
                .arm(
                    reqwest::Method::POST,
                    "/_emulator/faults",
                    Some(held(method)),
                )
                .await;
            assert!(code < 300, "{body}");
        }
        if kind != "Pending" {
            env.ns
                .apply(&manifest(&name, "2.0.0.0", json!({"soak": "2s"})))
                .await
                .unwrap();
            poll(&format!("{name} at {kind}"), || async {
                let st = status(&env, &name).await;
                if st["rollout"]["step"] == kind {
                    return Ok(());
                }
                let faults = env.get("/_emulator/faults").await.1;
                let writes = applied_writes(&env, &name).await;
                Err(format!(
                    "rollout {}; faults {faults}; applied {writes:?}",
                    st["rollout"]
                ))
            })
            .await;
        }
        env.stop_controller().await;
        env.arm(reqwest::Method::DELETE, "/_emulator/faults", None)
            .await;
        env.arm(reqwest::Method::DELETE, "/_emulator/staging-faults", None)
            .await;
        env.ns
            .apply(&manifest(&name, "2.0.0.0", json!({"soak": "2s"})))
            .await
            .unwrap();
        env.start_controller();
        wait_rollout(&env, &name, "complete after a restart", |r| {
            at(r, "Complete")
        })
        .await;

        let writes = applied_writes(&env, &name).await;
        let old = env.backend_name(&name).to_ascii_lowercase();
        let new = versioned(&env, &name, "2.0.0.0").to_ascii_lowercase();
        let count = |method: &str, backend: &str| {
            writes
                .iter()
                .find(|(m, p, _)| {
                    m == method && p.ends_with(&format!("appattachpackages/{backend}"))
                })
                .map_or(0, |w| w.2)
        };
        // One reference change per ring on each side.
        assert_eq!(count("PUT", &old), 3, "{kind}: {writes:?}");
        assert_eq!(count("PUT", &new), 3, "{kind}: {writes:?}");
        assert_eq!(count("DELETE", &old), 1, "{kind}: {writes:?}");
        // Each role assignment is written once, and removed once.
        for (m, p, n) in writes.iter().filter(|w| w.1.contains("roleassignments")) {
            assert_eq!(*n, 1, "{kind}: {m} {p} written {n} times");
        }
        // No session host is left drained.
        for pool in ["hp-r0", "hp-r1", "hp-r2"] {
            assert!(drained(&env, pool).await.is_empty(), "{kind}: {pool}");
        }
    }
}

#[tokio::test]
async fn the_rollout_command_pauses_resumes_undoes_and_lists_history() {
    let env = Env::staging("rollout-cli").await;
    ready_at_v1(&env, "cli", json!({"soak": "1s"})).await;
    let (ok, text) = cli(&env, &["history", "cli"]).await;
    assert!(ok && text.contains("no rollouts yet"), "{text}");

    let (ok, text) = cli(&env, &["pause", "cli"]).await;
    assert!(ok, "{text}");
    put_image(&env, "cli", "2.0.0.0");
    env.ns
        .apply(&manifest("cli", "2.0.0.0", json!({"soak": "1s"})))
        .await
        .unwrap();
    wait_rollout(&env, "cli", "paused before ring 0", |r| at(r, "Paused")).await;
    let (ok, text) = cli(&env, &["status", "cli"]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("Paused") && text.contains("HOST POOL"),
        "{text}"
    );
    assert_eq!(
        refs(&env, &versioned(&env, "cli", "2.0.0.0")).await,
        None,
        "nothing moved while paused"
    );

    let (ok, text) = cli(&env, &["resume", "cli"]).await;
    assert!(ok, "{text}");
    let (ok, text) = cli(&env, &["status", "cli", "--watch", "--timeout", "2m"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("Complete"), "{text}");
    let (ok, text) = cli(&env, &["history", "cli"]).await;
    assert!(
        ok && text.contains("2.0.0.0") && text.contains("Complete"),
        "{text}"
    );

    // Undo: back to 1.0.0.0, as a new rollout.
    let (ok, text) = cli(&env, &["undo", "cli"]).await;
    assert!(ok, "{text}");
    let st = wait_rollout(&env, "cli", "the undo complete", |r| {
        at(r, "Complete") && r["revision"] == 2
    })
    .await;
    assert_eq!(st["currentVersion"], "1.0.0.0");
    assert_eq!(st["currentImagePath"], image("cli", "1.0.0.0"));
    let (_, text) = cli(&env, &["history", "cli"]).await;
    assert_eq!(
        text.lines().filter(|l| l.contains("Complete")).count(),
        2,
        "{text}"
    );
    let (ok, text) = cli(&env, &["status", "cli"]).await;
    assert!(ok, "{text}");
}

async fn on_pool(env: &Env, version: &str) -> bool {
    let full =
        appattach_operator::domain::naming::full_name("Contoso.mx", version, "x64", "CN=Contoso");
    let path = format!("{}/msixPackages/{full}", env.pool_id("hp-m"));
    env.get(&path).await.0 == 200
}

#[tokio::test]
async fn msix_app_attach_drains_in_batches_waits_for_sessions_and_moves_only_in_the_window() {
    let mut env = Env::staging("rollout-msix").await;
    // Opened yesterday at midnight for three days: open now. Tomorrow's: closed now.
    let open = json!({"soak": "1s", "maxUnavailableHosts": 2,
        "maintenanceWindow": {"dayOfWeek": weekday(-1), "startTime": "00:00", "duration": "72h", "timeZone": "UTC"}});
    let closed = json!({"soak": "1s", "maxUnavailableHosts": 2,
        "maintenanceWindow": {"dayOfWeek": weekday(1), "startTime": "00:00", "duration": "1h", "timeZone": "Europe/Amsterdam"}});
    let msix = |version: &str, rollout: Value| {
        set(
            manifest("mx", version, rollout),
            "/spec/mode",
            json!("MsixAppAttach"),
        )
    };
    put_image(&env, "mx", "1.0.0.0");
    put_image(&env, "mx", "2.0.0.0");
    env.ns
        .apply(&msix("1.0.0.0", closed.clone()))
        .await
        .unwrap();
    env.ns
        .apply(&crate::harness::pools("mx-pools", "mx", &[("hp-m", 0)]))
        .await
        .unwrap();
    env.wait_package("mx", 1, 0).await;
    let alice = env.signin("alice@contoso.com", "hp-m").await;
    assert_eq!(alice["packages"][0]["version"], "1.0.0.0");

    // Outside the window nothing moves, and status says why.
    env.ns.apply(&msix("2.0.0.0", closed)).await.unwrap();
    let st = wait_rollout(&env, "mx", "waiting for the window", |r| {
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("outside the maintenance window"))
    })
    .await;
    assert!(drained(&env, "hp-m").await.is_empty(), "{st}");
    assert!(on_pool(&env, "1.0.0.0").await && !on_pool(&env, "2.0.0.0").await);

    // In the window: a batch of two drains, and waits for alice's session to end.
    env.ns.apply(&msix("2.0.0.0", open)).await.unwrap();
    let st = wait_rollout(&env, "mx", "waiting for a session", |r| {
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("waiting for 1 session(s)"))
    })
    .await;
    let batch = drained(&env, "hp-m").await;
    assert_eq!(batch.len(), 2, "{st}");
    assert!(
        batch
            .iter()
            .any(|h| h.ends_with(alice["sessionHost"].as_str().unwrap())),
        "{batch:?}"
    );
    assert!(
        !on_pool(&env, "2.0.0.0").await,
        "not replaced while the batch has sessions"
    );
    assert_eq!(st["rollout"]["drainedHosts"].as_array().unwrap().len(), 2);

    // A controller restarted with hosts drained picks up where it was.
    env.stop_controller().await;
    env.start_controller();
    let st = wait_rollout(&env, "mx", "still waiting after the restart", |r| {
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("waiting for 1 session(s)"))
    })
    .await;
    assert_eq!(drained(&env, "hp-m").await, batch, "{st}");
    sign_out(&env, &alice).await;
    let st = poll("the MSIX rollout complete", || async {
        let now = drained(&env, "hp-m").await.len();
        assert!(now <= 2, "more than maxUnavailableHosts drained: {now}");
        let st = status(&env, "mx").await;
        at(&st["rollout"], "Complete")
            .then_some(st.clone())
            .ok_or(format!("{st}"))
    })
    .await;
    assert!(
        on_pool(&env, "2.0.0.0").await && !on_pool(&env, "1.0.0.0").await,
        "{st}"
    );
    assert!(
        drained(&env, "hp-m").await.is_empty(),
        "no host left drained"
    );
    assert_eq!(st["currentVersion"], "2.0.0.0");
    let bob = env.signin("bob@contoso.com", "hp-m").await;
    assert_eq!(bob["packages"][0]["version"], "2.0.0.0");
}

#[tokio::test]
async fn a_newer_version_mid_rollout_supersedes_it_from_where_the_pools_are() {
    let env = Env::staging("rollout-supersede").await;
    ready_at_v1(&env, "sup", json!({"soak": "1s"})).await;
    put_image(&env, "sup", "2.0.0.0");
    put_image(&env, "sup", "3.0.0.0");
    // 2.0.0.0 soaks for an hour in ring 0.
    env.ns
        .apply(&manifest("sup", "2.0.0.0", json!({"soak": "1h"})))
        .await
        .unwrap();
    wait_rollout(&env, "sup", "2.0.0.0 soaking in ring 0", |r| {
        step(r, "Soaking", 0)
    })
    .await;
    let v2 = versioned(&env, "sup", "2.0.0.0");
    assert_eq!(refs(&env, &v2).await.unwrap(), ["hp-r0"]);

    env.ns
        .apply(&manifest("sup", "3.0.0.0", json!({"soak": "1s"})))
        .await
        .unwrap();
    let st = wait_rollout(&env, "sup", "3.0.0.0 complete", |r| at(r, "Complete")).await;
    let r = &st["rollout"];
    assert_eq!(r["revision"], 2, "{st}");
    assert_eq!(r["target"]["version"], "3.0.0.0");
    let from: Vec<&str> = r["previous"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(from, ["1.0.0.0", "2.0.0.0"], "{st}");
    assert_eq!(st["history"][0]["result"], "Complete");
    assert_eq!(st["history"][1]["result"], "Superseded");
    assert!(
        st["history"][1]["message"]
            .as_str()
            .unwrap()
            .contains("superseded by 3.0.0.0"),
        "{st}"
    );
    // Ring 0 went from 2.0.0.0 to 3.0.0.0, the others from 1.0.0.0; both old packages went.
    let rows = st["hostPools"].as_array().unwrap();
    assert_eq!(rows[0]["previousVersion"], "2.0.0.0", "{st}");
    assert_eq!(rows[1]["previousVersion"], "1.0.0.0", "{st}");
    let v3 = versioned(&env, "sup", "3.0.0.0");
    assert_eq!(refs(&env, &v3).await.unwrap(), ["hp-r0", "hp-r1", "hp-r2"]);
    assert_eq!(refs(&env, &v2).await, None);
    assert_eq!(refs(&env, &env.backend_name("sup")).await, None);
}

#[tokio::test]
async fn on_failure_pause_holds_for_a_person_and_goes_on_once_the_hosts_stage() {
    let env = Env::staging("rollout-hold").await;
    let rollout = json!({"soak": "1s", "onFailure": "Pause"});
    ready_at_v1(&env, "hold", rollout.clone()).await;
    env.ns
        .apply(&manifest("hold", "2.0.0.0", rollout))
        .await
        .unwrap();
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "hold",
            "Progressing",
            "False",
            Some("RolloutHeld"),
        )
        .await;
    let st = &obj["status"];
    assert_eq!(st["rollout"]["phase"], "Held", "{st}");
    // Nothing rolled back: ring 0 stays on the new version, the others were not touched.
    assert_eq!(
        refs(&env, &versioned(&env, "hold", "2.0.0.0"))
            .await
            .unwrap(),
        ["hp-r0"]
    );
    env.wait_warning("hold", "RolloutHeld").await;
    // Someone copies the image to the share: the hosts stage it and the rollout goes on.
    put_image(&env, "hold", "2.0.0.0");
    wait_rollout(&env, "hold", "complete", |r| at(r, "Complete")).await;
}
