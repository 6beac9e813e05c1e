//! Simulated sign-in: who gets what, decided by the entitlement rule.

use serde_json::json;

use crate::support::*;

async fn published(em: &TestEmulator) {
    em.create_package(
        "expenses",
        package_body(r"\\fs\apps\e.cim", "2.4.1.0", &["hp-a", "hp-b"]),
    )
    .await;
    assert_eq!(em.assign(&package_path("expenses"), FINANCE).await.0, 201);
}

#[tokio::test]
async fn a_group_member_on_an_assigned_pool_gets_the_package() {
    let em = TestEmulator::start().await;
    published(&em).await;
    let (status, s) = em
        .post(
            "/_emulator/signin",
            json!({"user": "carol@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["packages"].as_array().unwrap().len(), 1);
    assert_eq!(s["packages"][0]["version"], "2.4.1.0");
    assert_eq!(s["packages"][0]["imagePath"], r"\\fs\apps\e.cim");
    assert_eq!(s["packages"][0]["feature"], "AppAttach");
    // Breadth-first: the next sign-in lands on the other host.
    let (_, s2) = em
        .post(
            "/_emulator/signin",
            json!({"user": "alice@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_ne!(s["sessionHost"], s2["sessionHost"]);
}

#[tokio::test]
async fn users_outside_the_pool_or_the_assignment_get_nothing() {
    let em = TestEmulator::start().await;
    published(&em).await;
    // bob is in no application group of hp-a.
    let (status, e) = em
        .post(
            "/_emulator/signin",
            json!({"user": "bob@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("NotAuthorized"))
    );
    // alice may use hp-b's RemoteApp group, but the application is not published there.
    let (status, s) = em
        .post(
            "/_emulator/signin",
            json!({"user": "alice@contoso.com", "hostPool": "hp-b"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s["packages"], json!([]));
    // Taking the assignment away takes the package away at the next sign-in.
    let (_, roles) = em
        .get(&format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
            package_path("expenses")
        ))
        .await;
    let role = roles["value"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        em.delete(&format!("{role}?api-version=2022-04-01")).await.0,
        200
    );
    let (_, s) = em
        .post(
            "/_emulator/signin",
            json!({"user": "carol@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(s["packages"], json!([]));
    let (status, _) = em
        .post(
            "/_emulator/signin",
            json!({"user": "nobody@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn drained_hosts_take_no_sessions_and_sign_out_frees_a_slot() {
    let em = TestEmulator::start().await;
    published(&em).await;
    em.patch(
        &format!("{}/sessionHosts/a-0.contoso.com", pool_id("hp-a")),
        json!({"properties": {"allowNewSession": false}}),
    )
    .await;
    let (_, s) = em
        .post(
            "/_emulator/signin",
            json!({"user": "carol@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(s["sessionHost"], "a-1.contoso.com");
    em.patch(
        &format!("{}/sessionHosts/a-1.contoso.com", pool_id("hp-a")),
        json!({"properties": {"allowNewSession": false}}),
    )
    .await;
    let (status, e) = em
        .post(
            "/_emulator/signin",
            json!({"user": "carol@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("NoSessionHostAvailable"))
    );
    let (status, _) = em
        .post("/_emulator/signout", json!({"sessionId": s["sessionId"]}))
        .await;
    assert_eq!(status, 200);
    let (_, host) = em
        .get(&format!("{}/sessionHosts/a-1.contoso.com", pool_id("hp-a")))
        .await;
    assert_eq!(host["properties"]["sessions"], 0);
}

#[tokio::test]
async fn sessions_keep_the_version_they_signed_in_with() {
    let em = TestEmulator::start().await;
    published(&em).await;
    let (_, old) = em
        .post(
            "/_emulator/signin",
            json!({"user": "carol@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    em.put(
        &package_path("expenses"),
        package_body(r"\\fs\apps\e3.cim", "3.0.0.0", &["hp-a", "hp-b"]),
    )
    .await;
    let (_, new) = em
        .post(
            "/_emulator/signin",
            json!({"user": "alice@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(new["packages"][0]["version"], "3.0.0.0");
    let (_, records) = em.get("/_emulator/sessions").await;
    let of = |id: &serde_json::Value| {
        records["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r["id"] == id)
            .unwrap()["packages"][0]["version"]
            .clone()
    };
    assert_eq!(of(&old["sessionId"]), "2.4.1.0");
    assert_eq!(of(&new["sessionId"]), "3.0.0.0");
}

#[tokio::test]
async fn the_entitlements_command_prints_who_gets_what() {
    let em = TestEmulator::start().await;
    published(&em).await;
    // tokio's Command: a blocking wait would stall the emulator serving on this runtime.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args([
            "entitlements",
            "--emulator",
            &em.served.url(),
            "--user",
            "carol@contoso.com",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["USER", "carol@contoso.com"]);
    assert_eq!(
        rows[1],
        ["HOST", "POOL", "SIGN-IN", "PACKAGE", "VERSION", "IMAGE"]
    );
    assert!(
        rows.contains(&vec![
            "hp-a",
            "yes",
            "expenses",
            "2.4.1.0",
            r"\\fs\apps\e.cim"
        ]),
        "{stdout}"
    );
    assert!(
        rows.contains(&vec!["hp-b", "no", "-", "-", "-"]),
        "{stdout}"
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args([
            "entitlements",
            "--emulator",
            &em.served.url(),
            "--user",
            "mallory@contoso.com",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mallory@contoso.com"));
}
