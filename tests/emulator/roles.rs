//! Role assignments of Microsoft.Authorization (2022-04-01).

use serde_json::json;

use crate::support::*;

fn role_path(scope: &str, name: &str) -> String {
    format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01"
    )
}

fn body(principal: &str) -> serde_json::Value {
    json!({"properties": {
        "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{DVU}"),
        "principalId": principal,
        "principalType": "Group"
    }})
}

#[tokio::test]
async fn role_assignments_put_get_list_delete() {
    let em = TestEmulator::start().await;
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let scope = package_path("pkg-one");
    let name = "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0001";
    let (status, created) = em.put(&role_path(&scope, name), body(FINANCE)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["type"], "Microsoft.Authorization/roleAssignments");
    assert_eq!(created["name"], name);
    assert_eq!(created["properties"]["scope"], scope);
    assert_eq!(created["properties"]["principalType"], "Group");
    assert_eq!(em.get(&role_path(&scope, name)).await.1, created);

    let (_, list) = em.get(&format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=atScope()")).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let (_, by_principal) = em
        .get(&format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=principalId eq '{FINANCE}'"))
        .await;
    assert_eq!(by_principal["value"].as_array().unwrap().len(), 1);

    // The same assignment under another name is a conflict.
    let (status, dup) = em
        .put(
            &role_path(&scope, "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0002"),
            body(FINANCE),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(dup["error"]["code"], "RoleAssignmentExists");
    // The same name again is idempotent.
    assert_eq!(em.put(&role_path(&scope, name), body(FINANCE)).await.0, 201);
    // Another principal under the same name cannot be swapped in.
    let mut alice = body(ALICE);
    alice["properties"]["principalType"] = json!("User");
    assert_eq!(em.put(&role_path(&scope, name), alice).await.0, 409);

    assert_eq!(em.delete(&role_path(&scope, name)).await.0, 200);
    assert_eq!(em.get(&role_path(&scope, name)).await.0, 404);
    assert_eq!(em.delete(&role_path(&scope, name)).await.0, 204);
}

#[tokio::test]
async fn role_assignments_refuse_bad_names_principals_and_scopes() {
    let em = TestEmulator::start().await;
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let scope = package_path("pkg-one");
    let (status, e) = em
        .put(&role_path(&scope, "not-a-guid"), body(FINANCE))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("InvalidRoleAssignmentId"))
    );
    let (status, e) = em
        .put(
            &role_path(&scope, "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0003"),
            body("11111111-2222-4333-8444-555555555555"),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("PrincipalNotFound"))
    );
    let (status, _) = em
        .put(
            &role_path(
                &package_path("missing"),
                "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0004",
            ),
            body(FINANCE),
        )
        .await;
    assert_eq!(status, 404);
    let mut wrong_type = body(ALICE);
    wrong_type["properties"]["principalType"] = json!("Group");
    let (status, e) = em
        .put(
            &role_path(&scope, "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0005"),
            wrong_type,
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let mut bad_role = body(FINANCE);
    bad_role["properties"]["roleDefinitionId"] = json!("Desktop Virtualization User");
    let (status, e) = em
        .put(
            &role_path(&scope, "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0006"),
            bad_role,
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("InvalidRoleDefinitionId"))
    );
    let (status, _) = em.put(&format!("{scope}/providers/Microsoft.Authorization/roleAssignments/0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0007?api-version=2024-04-03"), body(FINANCE)).await;
    assert_eq!(status, 400, "role assignments take their own api-version");
}
