//! Every operation of the ARM surface, request and response.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn app_attach_package_put_get_patch_delete() {
    let em = TestEmulator::start().await;
    let path = package_path("contoso-expenses");
    let created = em
        .create_package(
            "contoso-expenses",
            package_body(r"\\fs\apps\e_1.cim", "1.0.0.0", &["hp-a"]),
        )
        .await;
    assert_eq!(created["id"], path);
    assert_eq!(created["name"], "contoso-expenses");
    assert_eq!(
        created["type"],
        "Microsoft.DesktopVirtualization/appattachpackages"
    );
    assert_eq!(created["location"], "westeurope");
    assert_eq!(created["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        created["properties"]["hostPoolReferences"],
        json!([pool_id("hp-a")])
    );
    assert!(created["properties"]["image"]["lastUpdated"].is_string());

    let (status, got) = em.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);

    // A second PUT of the same body is an update: 200, nothing else moves.
    let (status, again) = em
        .put(
            &path,
            package_body(r"\\fs\apps\e_1.cim", "1.0.0.0", &["hp-a"]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again, created);

    // PUT replaces hostPoolReferences whole.
    let (status, two) = em
        .put(
            &path,
            package_body(r"\\fs\apps\e_1.cim", "1.0.0.0", &["hp-a", "hp-b"]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        two["properties"]["hostPoolReferences"],
        json!([pool_id("hp-a"), pool_id("hp-b")])
    );

    // PATCH changes only what it names; an in-place update with a new version and image is fine.
    let (status, patched) = em
        .patch(&path, json!({"properties": {"image": {"isActive": false}, "failHealthCheckOnStagingFailure": "DoNotFail"}}))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["properties"]["image"]["isActive"], false);
    assert_eq!(patched["properties"]["image"]["version"], "1.0.0.0");
    assert_eq!(
        patched["properties"]["failHealthCheckOnStagingFailure"],
        "DoNotFail"
    );
    assert_eq!(
        patched["properties"]["hostPoolReferences"],
        two["properties"]["hostPoolReferences"]
    );
    let (status, updated) = em
        .patch(&path, json!({"properties": {"image": {"imagePath": r"\\fs\apps\e_2.cim", "version": "2.0.0.0"}}}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["properties"]["image"]["version"], "2.0.0.0");

    let (status, _) = em.delete(&path).await;
    assert_eq!(status, 200);
    let (status, body) = em.get(&path).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    let (status, _) = em.delete(&path).await;
    assert_eq!(status, 204, "deleting what is absent answers 204");
}

#[tokio::test]
async fn a_new_image_with_the_same_version_is_refused() {
    let em = TestEmulator::start().await;
    let path = package_path("pkg-one");
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let (status, body) = em
        .put(
            &path,
            package_body(r"\\fs\apps\b.cim", "1.0.0.0", &["hp-a"]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "InvalidParameter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("properties.image.version"),
        "{body}"
    );
    let (_, still) = em.get(&path).await;
    assert_eq!(
        still["properties"]["image"]["imagePath"], r"\\fs\apps\a.cim",
        "nothing was persisted"
    );
    // Lower is fine too.
    let (status, _) = em
        .put(
            &path,
            package_body(r"\\fs\apps\b.cim", "0.9.0.0", &["hp-a"]),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn lists_page_with_next_link_and_filter_by_package_name_and_host_pool() {
    let em = TestEmulator::start().await;
    for i in 0..5 {
        let mut body = package_body(
            &format!(r"\\fs\apps\p{i}.cim"),
            "1.0.0.0",
            &[if i < 2 { "hp-b" } else { "hp-a" }],
        );
        body["properties"]["image"]["packageName"] = json!(format!("Pkg{i}"));
        em.create_package(&format!("pkg-{i}"), body).await;
    }
    let mut names = Vec::new();
    let mut next = Some(format!("{}/appAttachPackages?pageSize=2", rg_path()));
    let mut pages = 0;
    while let Some(url) = next {
        let (status, page) = em.get(&url).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for v in page["value"].as_array().unwrap() {
            names.push(v["name"].as_str().unwrap().to_string());
        }
        next = page["nextLink"].as_str().map(String::from);
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["pkg-0", "pkg-1", "pkg-2", "pkg-3", "pkg-4"]);

    let (_, by_name) = em
        .get(&format!(
            "{}/appAttachPackages?$filter=packageName eq 'Pkg3'",
            rg_path()
        ))
        .await;
    let got: Vec<&str> = by_name["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["pkg-3"]);
    let (_, by_pool) = em
        .get(&format!(
            "{}/appAttachPackages?$filter=hostPool eq 'hp-b'",
            rg_path()
        ))
        .await;
    assert_eq!(by_pool["value"].as_array().unwrap().len(), 2);
    let (_, by_sub) =
        em.get(&format!("/subscriptions/{SUB}/providers/Microsoft.DesktopVirtualization/appAttachPackages?$filter=hostPool eq 'hp-a'")).await;
    assert_eq!(by_sub["value"].as_array().unwrap().len(), 3);
    let (status, bad) = em
        .get(&format!(
            "{}/appAttachPackages?$filter=color eq 'red'",
            rg_path()
        ))
        .await;
    assert_eq!(status, 400);
    assert!(bad["error"]["message"].as_str().unwrap().contains("color"));
}

#[tokio::test]
async fn host_pools_put_get_list_and_show_their_references() {
    let em = TestEmulator::start().await;
    let (status, hp) = em
        .put(&format!("{}/hostPools/hp-new", rg_path()), json!({
            "location": "northeurope",
            "properties": {"hostPoolType": "Pooled", "loadBalancerType": "DepthFirst", "preferredAppGroupType": "Desktop"}
        }))
        .await;
    assert_eq!(status, 201, "{hp}");
    assert_eq!(hp["type"], "Microsoft.DesktopVirtualization/hostpools");
    let (_, list) = em.get(&format!("{}/hostPools", rg_path())).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 3);

    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let (_, a) = em.get(&pool_id("hp-a")).await;
    assert_eq!(
        a["properties"]["appAttachPackageReferences"],
        json!([package_path("pkg-one")])
    );
    assert_eq!(
        a["properties"]["applicationGroupReferences"],
        json!([format!("{}/applicationGroups/ag-a-desktop", rg_path())])
    );
    assert_eq!(a["tags"]["appattach.io/identity-provider"], "EntraID");
    // Paths are case-insensitive, as in ARM.
    let (status, same) = em
        .get(
            &pool_id("HP-A")
                .replace("/hostPools/", "/hostpools/")
                .replace("resourceGroups", "resourcegroups"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(same["id"], a["id"]);
}

#[tokio::test]
async fn msix_packages_under_a_host_pool() {
    let em = TestEmulator::start().await;
    let full = "Contoso.Legacy_1.0.0.0_x64__8h66172c634n0";
    let path = format!("{}/msixPackages/{full}", pool_id("hp-b"));
    let body = json!({"properties": {
        "imagePath": r"\\fs\apps\legacy.vhdx", "packageName": "Contoso.Legacy",
        "packageFamilyName": "Contoso.Legacy_8h66172c634n0", "displayName": "Legacy",
        "packageRelativePath": format!("\\{full}"), "isRegularRegistration": false, "isActive": true,
        "version": "1.0.0.0", "packageApplications": [], "packageDependencies": []
    }});
    let (status, created) = em.put(&path, body.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], format!("hp-b/{full}"));
    assert_eq!(
        created["type"],
        "Microsoft.DesktopVirtualization/hostpools/msixpackages"
    );
    let (status, patched) = em
        .patch(
            &path,
            json!({"properties": {"isActive": false, "displayName": "Old"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["properties"]["isActive"], false);
    assert_eq!(patched["properties"]["imagePath"], r"\\fs\apps\legacy.vhdx");
    let (_, list) = em.get(&format!("{}/msixPackages", pool_id("hp-b"))).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    // The lower-case 'resourcegroups' spelling of the published path works too.
    let lower = path.replace("resourceGroups", "resourcegroups");
    assert_eq!(em.get(&lower).await.0, 200);
    assert_eq!(em.delete(&path).await.0, 200);
    assert_eq!(em.get(&path).await.0, 404);
    let (status, body) = em
        .put(
            &format!("{}/msixPackages/{full}", pool_id("hp-missing")),
            body,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ParentResourceNotFound");
}

#[tokio::test]
async fn application_groups_and_remote_app_applications() {
    let em = TestEmulator::start().await;
    let ag = format!("{}/applicationGroups/ag-b-apps", rg_path());
    let (status, created) = em
        .put(&ag, json!({"location": "westeurope", "properties": {"applicationGroupType": "RemoteApp", "hostPoolArmPath": pool_id("hp-b")}}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["type"],
        "Microsoft.DesktopVirtualization/applicationgroups"
    );
    let app = format!("{ag}/applications/expenses");
    let (status, body) = em.put(&app, json!({"properties": {"applicationType": "MsixApplication", "commandLineSetting": "DoNotAllow"}})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("msixPackageFamilyName"),
        "{body}"
    );
    let (status, created) = em
        .put(&app, json!({"properties": {
            "applicationType": "MsixApplication", "commandLineSetting": "DoNotAllow",
            "msixPackageFamilyName": "Contoso.Expenses_8h66172c634n0", "msixPackageApplicationId": "App", "friendlyName": "Expenses"
        }}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "ag-b-apps/expenses");
    let (_, list) = em.get(&format!("{ag}/applications")).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    // Family name and application id are set at creation only; the rest changes in place.
    let (status, body) = em
        .put(&app, json!({"properties": {
            "applicationType": "MsixApplication", "commandLineSetting": "DoNotAllow",
            "msixPackageFamilyName": "Contoso.Other_8h66172c634n0", "msixPackageApplicationId": "App"
        }}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("properties.msixPackageFamilyName cannot be changed"),
        "{body}"
    );
    let (status, changed) = em
        .put(&app, json!({"properties": {
            "applicationType": "MsixApplication", "commandLineSetting": "DoNotAllow",
            "msixPackageFamilyName": "Contoso.Expenses_8h66172c634n0", "msixPackageApplicationId": "App",
            "friendlyName": "Expenses 2", "iconPath": "C:\\icons\\e.ico", "iconIndex": 1,
            "description": "appattach.io/owner=ns/expenses"
        }}))
        .await;
    assert_eq!(status, 200, "{changed}");
    for (field, value) in [
        ("friendlyName", json!("Expenses 2")),
        ("iconPath", json!("C:\\icons\\e.ico")),
        ("iconIndex", json!(1)),
        ("description", json!("appattach.io/owner=ns/expenses")),
    ] {
        assert_eq!(changed["properties"][field], value, "{field}: {changed}");
    }
    // Desktop groups hold no applications.
    let (status, _) = em
        .put(
            &format!(
                "{}/applicationGroups/ag-a-desktop/applications/x",
                rg_path()
            ),
            json!({"properties": {"commandLineSetting": "Allow"}}),
        )
        .await;
    assert_eq!(status, 400);
    // A group needs an existing host pool.
    let (status, body) = em
        .put(&format!("{}/applicationGroups/ag-x", rg_path()), json!({"location": "westeurope", "properties": {"applicationGroupType": "Desktop", "hostPoolArmPath": pool_id("nope")}}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("properties.hostPoolArmPath")
    );
    assert_eq!(em.delete(&app).await.0, 200);
    assert_eq!(em.delete(&ag).await.0, 200);
}

#[tokio::test]
async fn session_hosts_list_get_and_drain() {
    let em = TestEmulator::start().await;
    let (_, list) = em.get(&format!("{}/sessionHosts", pool_id("hp-a"))).await;
    let hosts = list["value"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["name"], "hp-a/a-0.contoso.com");
    assert_eq!(
        hosts[0]["type"],
        "Microsoft.DesktopVirtualization/hostpools/sessionhosts"
    );
    assert_eq!(hosts[0]["properties"]["osVersion"], "10.0.22631.4602");
    assert_eq!(hosts[0]["properties"]["allowNewSession"], true);
    assert_eq!(
        hosts[0]["properties"]["sessionHostHealthCheckResults"][0]["healthCheckName"],
        "AppAttachHealthCheck"
    );
    let path = format!("{}/sessionHosts/a-0.contoso.com", pool_id("hp-a"));
    let (status, drained) = em
        .patch(&path, json!({"properties": {"allowNewSession": false}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(drained["properties"]["allowNewSession"], false);
    assert_eq!(
        em.get(&path).await.1["properties"]["allowNewSession"],
        false
    );
    assert_eq!(
        em.put(&path, json!({"properties": {}})).await.0,
        405,
        "session hosts are registered, not created"
    );
}

#[tokio::test]
async fn user_sessions_list_message_and_log_off() {
    let em = TestEmulator::start().await;
    let (status, s) = em
        .post(
            "/_emulator/signin",
            json!({"user": "carol@contoso.com", "hostPool": "hp-a"}),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    let session = s["sessionId"].as_str().unwrap().to_string();
    let (_, by_pool) = em.get(&format!("{}/userSessions", pool_id("hp-a"))).await;
    assert_eq!(by_pool["value"].as_array().unwrap().len(), 1);
    let host = session.rsplit_once("/userSessions/").unwrap().0.to_string();
    let (_, by_host) = em.get(&format!("{host}/userSessions")).await;
    let item = &by_host["value"][0];
    assert_eq!(item["properties"]["userPrincipalName"], "carol@contoso.com");
    assert_eq!(item["properties"]["sessionState"], "Active");
    assert_eq!(
        item["type"],
        "Microsoft.DesktopVirtualization/hostpools/sessionhosts/usersessions"
    );
    let (_, filtered) = em
        .get(&format!(
            "{}/userSessions?$filter=userPrincipalName eq 'bob@contoso.com'",
            pool_id("hp-a")
        ))
        .await;
    assert!(filtered["value"].as_array().unwrap().is_empty());

    let (status, _) = em
        .post(
            &format!("{session}/sendMessage?{API}"),
            json!({"messageTitle": "Update", "messageBody": "Expenses 2.0 at next sign-in"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, records) = em.get("/_emulator/sessions").await;
    assert_eq!(
        records["value"][0]["messages"][0]["messageBody"],
        "Expenses 2.0 at next sign-in"
    );
    assert_eq!(em.get(&host).await.1["properties"]["sessions"], 1);

    assert_eq!(em.delete(&session).await.0, 200);
    assert_eq!(em.get(&session).await.0, 404);
    assert_eq!(em.get(&host).await.1["properties"]["sessions"], 0);
    assert_eq!(em.delete(&session).await.0, 204);
}

#[tokio::test]
async fn the_newer_api_version_is_accepted_too() {
    let em = TestEmulator::start().await;
    let (status, _) = em
        .get(&format!("{}?api-version=2025-10-10", pool_id("hp-a")))
        .await;
    assert_eq!(status, 200);
}
