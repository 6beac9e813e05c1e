//! Bad input: 400 in ARM's error shape naming the property, never a 500, nothing persisted.

use serde_json::{Value, json};

use crate::support::*;

async fn refused(em: &TestEmulator, path: &str, body: Value, code: &str, names: &str) {
    let (status, got) = em.put(path, body).await;
    assert_eq!(status, 400, "{path}: {got}");
    assert_eq!(got["error"]["code"], code, "{got}");
    let message = got["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(names),
        "the message should name {names:?}: {message}"
    );
    assert_eq!(em.get(path).await.0, 404, "a refused PUT persists nothing");
}

#[tokio::test]
async fn malformed_and_incomplete_bodies_name_the_problem() {
    let em = TestEmulator::start().await;
    let path = package_path("pkg-one");
    let (status, got) = em.send(reqwest::Method::PUT, &path, None).await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (400, Some("InvalidRequestContent"))
    );
    let raw = em
        .http
        .put(format!("{}{path}?{API}", em.served.url()))
        .header("content-type", "application/json")
        .body("{\"location\": \"westeurope\", \"properties\": {")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let got: Value = raw.json().await.unwrap();
    assert_eq!(got["error"]["code"], "InvalidRequestContent");

    refused(
        &em,
        &path,
        json!({"location": "westeurope"}),
        "InvalidRequestContent",
        "properties",
    )
    .await;
    refused(
        &em,
        &path,
        json!({"properties": {}}),
        "LocationRequired",
        "location",
    )
    .await;
    let mut wrong_enum = package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]);
    wrong_enum["properties"]["failHealthCheckOnStagingFailure"] = json!("Sometimes");
    refused(
        &em,
        &path,
        wrong_enum,
        "InvalidRequestContent",
        "properties.failHealthCheckOnStagingFailure",
    )
    .await;
    let mut wrong_type = package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]);
    wrong_type["properties"]["image"]["isActive"] = json!("yes");
    refused(
        &em,
        &path,
        wrong_type,
        "InvalidRequestContent",
        "properties.image.isActive",
    )
    .await;
    let mut bad_timestamp = package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]);
    bad_timestamp["properties"]["image"]["isPackageTimestamped"] = json!(true);
    refused(
        &em,
        &path,
        bad_timestamp,
        "InvalidRequestContent",
        "properties.image.isPackageTimestamped",
    )
    .await;
    refused(
        &em,
        &path,
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-missing"]),
        "InvalidParameter",
        "properties.hostPoolReferences[0]",
    )
    .await;
    let mut not_an_id = package_body(r"\\fs\apps\a.cim", "1.0.0.0", &[]);
    not_an_id["properties"]["hostPoolReferences"] = json!(["hp-a"]);
    refused(
        &em,
        &path,
        not_an_id,
        "InvalidParameter",
        "properties.hostPoolReferences[0]",
    )
    .await;
    refused(
        &em,
        &format!("{}/hostPools/hp-x", rg_path()),
        json!({"location": "westeurope", "properties": {"hostPoolType": "Pooled", "loadBalancerType": "BreadthFirst"}}),
        "InvalidRequestContent",
        "properties.preferredAppGroupType",
    )
    .await;
}

#[tokio::test]
async fn names_that_break_the_arm_rule_are_refused() {
    let em = TestEmulator::start().await;
    for bad in ["Contoso-Expenses", "a--b", "-ab", "ab", "has_underscore"] {
        refused(
            &em,
            &package_path(bad),
            package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
            "InvalidResourceName",
            bad,
        )
        .await;
    }
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let em = TestEmulator::start().await;
    let (status, got) = em
        .get(&format!("{}{}", em.served.url(), pool_id("hp-a")))
        .await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
    let (status, got) = em
        .get(&format!(
            "{}?api-version=2019-12-10-preview",
            pool_id("hp-a")
        ))
        .await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (400, Some("InvalidApiVersionParameter"))
    );
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2024-04-03")
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_arm_shape() {
    let em = TestEmulator::start().await;
    let (status, got) = em.get(&format!("{}/widgets/w1", rg_path())).await;
    assert_eq!(status, 404);
    assert!(got["error"]["code"].is_string());
    let (status, got) = em.get("/nothing/here").await;
    assert_eq!(status, 404);
    assert!(got["error"]["message"].is_string());
    let (status, _) = em
        .post(&format!("{}?{API}", package_path("pkg-one")), json!({}))
        .await;
    assert_eq!(status, 405);
}

/// Arbitrary bodies never make the emulator answer 5xx.
#[tokio::test]
async fn no_body_makes_it_fail_with_a_server_error() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let em = TestEmulator::start().await;
    let leaf = proptest::prop_oneof![
        proptest::strategy::Just(Value::Null),
        proptest::prelude::any::<bool>().prop_map(Value::from),
        proptest::prelude::any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9\\\\./:-]{0,12}".prop_map(Value::from),
    ];
    let keys = proptest::sample::select(vec![
        "location",
        "properties",
        "image",
        "imagePath",
        "version",
        "isActive",
        "hostPoolReferences",
        "failHealthCheckOnStagingFailure",
        "hostPoolType",
        "principalId",
        "roleDefinitionId",
        "allowNewSession",
    ]);
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        proptest::prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let paths = [
        package_path("fuzz"),
        format!("{}/hostPools/hp-fuzz", rg_path()),
        format!("{}/msixPackages/Fuzz_1.0.0.0_x64__x", pool_id("hp-a")),
        format!("{}/sessionHosts/a-0.contoso.com", pool_id("hp-a")),
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/0b6f1c62-3c1e-4b4e-9a4e-0a77a7ac0009?api-version=2022-04-01",
            pool_id("hp-a")
        ),
    ];
    let mut runner = TestRunner::deterministic();
    for _ in 0..60 {
        let body = value.new_tree(&mut runner).unwrap().current();
        for path in &paths {
            for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
                let (status, got) = em.send(method.clone(), path, Some(body.clone())).await;
                assert!(
                    status < 500,
                    "{method} {path} with {body} answered {status}: {got}"
                );
            }
        }
    }
}

/// Every PUT of the provider that takes a `location` refuses one where the resource type
/// is not offered, as ARM does, and names the regions that are.
#[tokio::test]
async fn a_location_the_resource_type_is_not_offered_in_is_refused_as_arm_does() {
    let em = TestEmulator::start().await;
    let mut package = package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]);
    package["location"] = json!("mars");
    let pool = json!({
        "location": "mars",
        "properties": {"hostPoolType": "Pooled", "loadBalancerType": "DepthFirst", "preferredAppGroupType": "Desktop"}
    });
    let group = json!({
        "location": "mars",
        "properties": {"applicationGroupType": "Desktop", "hostPoolArmPath": pool_id("hp-a")}
    });
    for (path, body, kind) in [
        (package_path("pkg-mars"), package, "appattachpackages"),
        (
            format!("{}/hostPools/hp-mars", rg_path()),
            pool,
            "hostpools",
        ),
        (
            format!("{}/applicationGroups/ag-mars", rg_path()),
            group,
            "applicationgroups",
        ),
    ] {
        let (status, got) = em.put(&path, body).await;
        assert_eq!(status, 400, "{path}: {got}");
        assert_eq!(got["error"]["code"], "LocationNotAvailableForResourceType");
        let message = got["error"]["message"].as_str().unwrap();
        let expected = format!(
            "The provided location 'mars' is not available for resource type 'Microsoft.DesktopVirtualization/{kind}'. List of available regions for the resource type is '"
        );
        assert!(
            message
                .to_ascii_lowercase()
                .starts_with(&expected.to_ascii_lowercase()),
            "{message}"
        );
        for region in ["westeurope", "northeurope", "eastus"] {
            assert!(message.contains(region), "{message}");
        }
        assert_eq!(em.get(&path).await.0, 404, "a refused PUT persists nothing");
    }
}

#[tokio::test]
async fn a_location_is_compared_as_arm_does_without_case_or_spaces() {
    let em = TestEmulator::start().await;
    let mut package = package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]);
    package["location"] = json!("West Europe");
    let got = em.create_package("pkg-spaced", package).await;
    assert_eq!(got["location"], "westeurope", "{got}");
    let (status, got) = em
        .put(
            &format!("{}/hostPools/hp-upper", rg_path()),
            json!({
                "location": "NorthEurope",
                "properties": {"hostPoolType": "Pooled", "loadBalancerType": "DepthFirst", "preferredAppGroupType": "Desktop"}
            }),
        )
        .await;
    assert_eq!(
        (status, &got["location"]),
        (201, &json!("northeurope")),
        "{got}"
    );
}

#[tokio::test]
async fn a_world_with_a_host_pool_in_an_unavailable_location_is_refused() {
    let mut world = world();
    world.host_pools[1].location = "Mars".into();
    let err = appattach_operator::emulator::Emulator::new(appattach_operator::emulator::Config {
        world: Some(world.clone()),
        shares: vec![],
        state_dir: None,
        token: None,
        staging_interval: None,
        arm_budget: None,
    })
    .err()
    .expect("a world in an unavailable location is refused")
    .to_string();
    for part in ["hp-b", "'Mars'", "westeurope"] {
        assert!(err.contains(part), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("world.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&world).unwrap()).unwrap();
    let err = appattach_operator::emulator::World::load(&file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("hp-b") && err.contains("'Mars'"), "{err}");
}
