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

/// The names of the role assignments a list at `scope` returns, sorted.
async fn list(em: &TestEmulator, scope: &str, filter: &str) -> Vec<String> {
    let (status, list) = em
        .get(&format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01{filter}"
        ))
        .await;
    assert_eq!(status, 200, "{list}");
    let mut names: Vec<String> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn role_lists_take_scopes_above_and_below_in_any_case() {
    let em = TestEmulator::start().await;
    for name in ["pkg-one", "pkg-two"] {
        em.create_package(name, package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]))
            .await;
    }
    let rg = format!("/subscriptions/{SUB}/resourceGroups/{RG}");
    // The world's own assignments (on its application groups) are below the group too.
    let world_roles = list(&em, &rg, "").await;
    let at_rg = "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0010";
    let at_one = "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0011";
    let at_two = "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0012";
    // Scopes are matched in any case: the package's path is written upper-case here.
    assert_eq!(em.put(&role_path(&rg, at_rg), body(FINANCE)).await.0, 201);
    assert_eq!(
        em.put(
            &role_path(&package_path("pkg-one").to_uppercase(), at_one),
            body(FINANCE)
        )
        .await
        .0,
        201
    );
    assert_eq!(
        em.put(&role_path(&package_path("pkg-two"), at_two), body(FINANCE))
            .await
            .0,
        201
    );
    // The same principal and role at the same scope, written in another case, is the
    // same assignment.
    let (status, dup) = em
        .put(
            &role_path(
                &package_path("pkg-one"),
                "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0013",
            ),
            body(FINANCE),
        )
        .await;
    assert_eq!(
        (status, dup["error"]["code"].as_str()),
        (409, Some("RoleAssignmentExists"))
    );

    // At a package: its own and the inherited one; never its sibling's.
    assert_eq!(
        list(&em, &package_path("pkg-one"), "&$filter=atScope()").await,
        [at_rg, at_one]
    );
    assert_eq!(
        list(&em, &package_path("pkg-two"), "").await,
        [at_rg, at_two]
    );
    // At the resource group: atScope() is its own; no filter adds those below it.
    assert_eq!(list(&em, &rg, "&$filter=atScope()").await, [at_rg]);
    let with = |extra: &[&str]| {
        let mut all: Vec<String> = world_roles.clone();
        all.extend(extra.iter().map(|s| s.to_string()));
        all.sort();
        all
    };
    assert_eq!(list(&em, &rg, "").await, with(&[at_rg, at_one, at_two]));

    // A deleted assignment leaves every list.
    assert_eq!(
        em.delete(&role_path(&package_path("pkg-one"), at_one))
            .await
            .0,
        200
    );
    assert_eq!(list(&em, &rg, "").await, with(&[at_rg, at_two]));
    assert_eq!(list(&em, &package_path("pkg-one"), "").await, [at_rg]);
}

const CONDITION: &str = "((!(ActionMatches{'Microsoft.DesktopVirtualization/appAttachPackages/read'})) OR (@Resource[Microsoft.DesktopVirtualization/appAttachPackages:name] StringStartsWith 'fin-'))";

#[tokio::test]
async fn a_role_assignments_condition_is_kept_and_returned() {
    let em = TestEmulator::start().await;
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let scope = package_path("pkg-one");
    let name = "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0011";
    let mut conditional = body(FINANCE);
    conditional["properties"]["condition"] = json!(CONDITION);
    conditional["properties"]["conditionVersion"] = json!("2.0");
    conditional["properties"]["description"] = json!("finance packages only");
    let (status, created) = em.put(&role_path(&scope, name), conditional).await;
    assert_eq!(status, 201, "{created}");
    for got in [
        created.clone(),
        em.get(&role_path(&scope, name)).await.1,
        em.get(&format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=atScope()"
        ))
        .await
        .1["value"][0]
            .clone(),
    ] {
        assert_eq!(got["properties"]["condition"], CONDITION, "{got}");
        assert_eq!(got["properties"]["conditionVersion"], "2.0", "{got}");
        assert_eq!(got["properties"]["description"], "finance packages only");
    }
    // ARM lets the condition of an assignment change under its name, and keeps the rest.
    let mut changed = body(FINANCE);
    changed["properties"]["condition"] = json!(
        "@Resource[Microsoft.DesktopVirtualization/appAttachPackages:name] StringEquals 'fin-x'"
    );
    changed["properties"]["conditionVersion"] = json!("2.0");
    let (status, updated) = em.put(&role_path(&scope, name), changed).await;
    assert_eq!(status, 201, "{updated}");
    let got = em.get(&role_path(&scope, name)).await.1;
    assert_eq!(got, updated);
    assert!(
        got["properties"]["condition"]
            .as_str()
            .unwrap()
            .ends_with("'fin-x'"),
        "{got}"
    );
    assert_eq!(
        got["properties"]["createdOn"],
        created["properties"]["createdOn"]
    );
    // One without a condition has none.
    let (_, plain) = em
        .put(
            &role_path(&scope, "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0012"),
            {
                let mut b = body(ALICE);
                b["properties"]["principalType"] = json!("User");
                b
            },
        )
        .await;
    assert!(plain["properties"].get("condition").is_none(), "{plain}");
    assert!(
        plain["properties"].get("conditionVersion").is_none(),
        "{plain}"
    );
}

#[tokio::test]
async fn a_condition_needs_version_2_0_and_a_version_needs_a_condition() {
    let em = TestEmulator::start().await;
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let scope = package_path("pkg-one");
    let path = role_path(&scope, "0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0013");
    for (condition, version, names) in [
        (Some(CONDITION), None, "properties.conditionVersion"),
        (Some(CONDITION), Some("1.0"), "'1.0'"),
        (Some(CONDITION), Some("3.0"), "'3.0'"),
        (None, Some("2.0"), "properties.condition"),
        (Some("  "), Some("2.0"), "properties.condition"),
    ] {
        let mut b = body(FINANCE);
        if let Some(c) = condition {
            b["properties"]["condition"] = json!(c);
        }
        if let Some(v) = version {
            b["properties"]["conditionVersion"] = json!(v);
        }
        let (status, e) = em.put(&path, b).await;
        assert_eq!(status, 400, "{condition:?} {version:?}: {e}");
        assert_eq!(e["error"]["code"], "InvalidRoleAssignmentCondition", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{message}");
        assert!(message.contains("2.0"), "{message}");
        assert_eq!(em.get(&path).await.0, 404, "nothing was stored");
    }
}
