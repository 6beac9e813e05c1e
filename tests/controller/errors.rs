//! ARM errors, mapped to stable condition reasons with a message that says what to do.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Env, FINANCE, SUB, package, pools, users};

async fn fault(env: &Env, rule: Value) {
    let (code, body) = env
        .arm(reqwest::Method::POST, "/_emulator/faults", Some(rule))
        .await;
    assert!(code < 300, "{body}");
}

/// Every PUT of the package answers this error; the package must end not Ready with
/// `reason`, its message holding `hint`.
async fn refused_with(
    test: &str,
    status: u16,
    code: &str,
    message: &str,
    reason: &str,
    hint: &str,
) {
    let env = Env::new(test, Duration::from_secs(600)).await;
    let path = env.package_path("p").to_ascii_lowercase();
    fault(
        &env,
        json!({"method": "PUT", "pathContains": path, "status": status, "code": code, "message": message, "fraction": 1.0}),
    )
    .await;
    env.apply_assigned("p", &[("hp-a", 0)]).await;
    let obj = env
        .wait_condition("AppAttachPackage", "p", "Ready", "False", Some(reason))
        .await;
    let text = obj["status"]["conditions"].to_string();
    assert!(text.contains(hint), "{text}");
}

#[tokio::test]
async fn authorization_failed_names_the_missing_action() {
    refused_with(
        "err-forbidden",
        403,
        "AuthorizationFailed",
        "The client 'c' with object id 'o' does not have authorization to perform action 'Microsoft.DesktopVirtualization/appAttachPackages/write' over scope '/subscriptions/s/resourceGroups/rg-avd' or the scope is invalid.",
        "BackendForbidden",
        "may not perform Microsoft.DesktopVirtualization/appAttachPackages/write",
    )
    .await;
}

#[tokio::test]
async fn a_missing_resource_group_and_an_invalid_parameter_say_what_to_fix() {
    refused_with(
        "err-rg",
        404,
        "ResourceGroupNotFound",
        "Resource group 'rg-avd' could not be found.",
        "ResourceGroupNotFound",
        "create the resource group, or fix --resource-group",
    )
    .await;
    refused_with(
        "err-param",
        400,
        "InvalidParameter",
        "The value of parameter properties.image.packageFamilyName is invalid.",
        "InvalidParameter",
        "properties.image.packageFamilyName",
    )
    .await;
}

#[tokio::test]
async fn principal_not_found_is_retried_before_it_is_reported() {
    let env = Env::new("err-principal", Duration::from_secs(600)).await;
    let roles = format!(
        "{}/providers/microsoft.authorization/roleassignments",
        env.package_path("late").to_ascii_lowercase()
    );
    let not_found = |count: u64| {
        json!({"method": "PUT", "pathContains": roles, "status": 400, "code": "PrincipalNotFound",
               "message": "Principal 6f1c2d3e4a5b4c6d8e7f90a1b2c3d4e5 does not exist in the directory.", "count": count})
    };
    // Twice (a group created a moment ago): retried, and Ready without ever saying so.
    fault(&env, not_found(2)).await;
    env.apply_assigned("late", &[("hp-a", 0)]).await;
    let obj = env.wait_package("late", 1, 1).await;
    assert_eq!(env.roles("late").await.len(), 1, "{obj}");
    // For good: reported after the retries.
    env.ns.apply(&package("gone")).await.unwrap();
    env.ns
        .apply(&pools("gone-pools", "gone", &[("hp-a", 0)]))
        .await
        .unwrap();
    let roles = format!(
        "{}/providers/microsoft.authorization/roleassignments",
        env.package_path("gone").to_ascii_lowercase()
    );
    fault(
        &env,
        json!({"method": "PUT", "pathContains": roles, "status": 400, "code": "PrincipalNotFound",
               "message": "Principal does not exist in the directory.", "fraction": 1.0}),
    )
    .await;
    env.ns
        .apply(&users(
            "gone-users",
            "gone",
            &[("Group", "Finance", Some(FINANCE))],
        ))
        .await
        .unwrap();
    env.wait_condition(
        "AppAttachPackage",
        "gone",
        "Ready",
        "False",
        Some("PrincipalNotFound"),
    )
    .await;
    let refused = env.get("/_emulator/requests/log").await.1["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == 400 && e["path"].as_str().unwrap().starts_with(&roles))
        .count();
    assert!(refused >= 4, "retried {refused} times");
}

#[tokio::test]
async fn an_existing_assignment_of_the_role_is_adopted() {
    let mut env = Env::new("err-adopt", Duration::from_secs(600)).await;
    env.ns.apply(&package("adopt")).await.unwrap();
    env.ns
        .apply(&pools("adopt-pools", "adopt", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.wait_package("adopt", 1, 0).await;
    // While no controller runs (one would remove an assignment no object asks for),
    // someone assigns Finance in the portal, under a name of their own, and Finance is
    // added in Git.
    env.stop_controller().await;
    let name = "0f0f0f0f-1111-4222-8333-444455556666";
    let (code, body) = env
        .arm(
            reqwest::Method::PUT,
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01",
                env.package_path("adopt")
            ),
            Some(json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/1d18fff3-a72a-46b5-b4a9-0b38a3cd7e63"),
                "principalId": FINANCE, "principalType": "Group"}})),
        )
        .await;
    assert!(code < 300, "{body}");
    env.ns
        .apply(&users(
            "adopt-users",
            "adopt",
            &[("Group", "Finance", Some(FINANCE))],
        ))
        .await
        .unwrap();
    env.start_controller();
    env.wait_package("adopt", 1, 1).await;
    let roles = env.roles("adopt").await;
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0]["name"], name, "kept, not replaced");
}

#[tokio::test]
async fn a_package_made_in_the_portal_is_adopted_only_when_asked() {
    let env = Env::new("adopt-portal", Duration::from_secs(600)).await;
    // Made in the portal under the name this object maps to, on hp-a already.
    let (code, body) = env
        .arm(
            reqwest::Method::PUT,
            &env.package_path("portal"),
            Some(json!({"location": "westeurope", "properties": {
                "hostPoolReferences": [env.pool_id("hp-a")],
                "image": {"imagePath": r"\\fs\apps\portal_1.0.0.0.vhdx", "packageName": "Contoso.portal",
                          "packageFamilyName": "Contoso.portal_h91ms92gdsmmt", "version": "1.0.0.0", "isActive": true}}})),
        )
        .await;
    assert!(code < 300, "{body}");
    env.apply_assigned("portal", &[("hp-a", 0)]).await;
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "portal",
            "Ready",
            "False",
            Some("AlreadyExists"),
        )
        .await;
    assert!(
        obj["status"].to_string().contains("appattach.io/adopt"),
        "{obj}"
    );
    let (_, untouched) = env.get(&env.package_path("portal")).await;
    assert!(
        untouched["tags"].is_null(),
        "not written before adoption: {untouched}"
    );
    // Adopted: the package stays (on hp-a all along) and is now this object's.
    let adopt = crate::support::set(
        package("portal"),
        "/metadata/annotations",
        json!({"appattach.io/adopt": "true"}),
    );
    env.ns.apply(&adopt).await.unwrap();
    env.wait_package("portal", 1, 1).await;
    let (_, adopted) = env.get(&env.package_path("portal")).await;
    assert_eq!(
        adopted["tags"]["appattach.io/owner"],
        format!("{}/portal", env.ns.name)
    );
    assert_eq!(env.roles("portal").await.len(), 1);
}
