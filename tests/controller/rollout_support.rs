//! What the rollout tests share: the three ring pools, images on the test share, a package
//! Ready at 1.0.0.0, waiting on the rollout, reading the backend, the CLI.

use serde_json::{Value, json};

use crate::harness::{Env, SHARE, package, poll};
use crate::support::set;

pub const RINGS: [(&str, i32); 3] = [("hp-r0", 0), ("hp-r1", 1), ("hp-r2", 2)];

pub fn image(name: &str, version: &str) -> String {
    format!(r"{SHARE}\{name}_{version}.vhdx")
}

/// Puts an image file on the test share.
pub fn put_image(env: &Env, name: &str, version: &str) {
    std::fs::write(env.share.join(format!("{name}_{version}.vhdx")), b"vhdx").unwrap();
}

/// The package at `version`, with these rollout settings.
pub fn manifest(name: &str, version: &str, rollout: Value) -> Value {
    let p = set(package(name), "/spec/package/version", json!(version));
    let p = set(p, "/spec/image/path", json!(image(name, version)));
    set(p, "/spec/rollout", rollout)
}

/// A package on the three ring pools, Ready at 1.0.0.0 with its image on the share.
pub async fn ready_at_v1(env: &Env, name: &str, rollout: Value) {
    put_image(env, name, "1.0.0.0");
    env.ns
        .apply(&manifest(name, "1.0.0.0", rollout))
        .await
        .unwrap();
    env.apply_assigned(name, &RINGS).await;
    env.wait_package(name, 3, 1).await;
}

pub async fn status(env: &Env, name: &str) -> Value {
    let obj = env.ns.api("AppAttachPackage").get(name).await.unwrap();
    serde_json::to_value(obj).unwrap()["status"].clone()
}

/// Waits until the rollout satisfies `check`; returns the status.
pub async fn wait_rollout(
    env: &Env,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    poll(&format!("{name}: {what}"), || async {
        let st = status(env, name).await;
        if check(&st["rollout"]) {
            Ok(st)
        } else {
            Err(format!("rollout {}", st["rollout"]))
        }
    })
    .await
}

pub fn at(r: &Value, phase: &str) -> bool {
    r["phase"] == phase
}

pub fn step(r: &Value, step: &str, ring: i64) -> bool {
    r["step"] == step && r["ring"] == ring
}

pub async fn refs(env: &Env, backend: &str) -> Option<Vec<String>> {
    let (code, body) = env
        .get(&format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DesktopVirtualization/appAttachPackages/{backend}",
            crate::harness::SUB,
            crate::harness::RG
        ))
        .await;
    (code == 200).then(|| {
        let mut v: Vec<String> = body["properties"]["hostPoolReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    })
}

pub fn versioned(env: &Env, name: &str, version: &str) -> String {
    appattach_operator::domain::naming::versioned_backend_name(&env.ns.name, name, version)
}

pub fn time(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("a time, got {v}"))
        .parse()
        .unwrap()
}

/// The session hosts of a pool, as ARM lists them.
pub async fn session_hosts(env: &Env, pool: &str) -> Vec<Value> {
    let (_, hosts) = env
        .get(&format!("{}/sessionHosts", env.pool_id(pool)))
        .await;
    hosts["value"].as_array().unwrap().clone()
}

pub async fn sign_out(env: &Env, session: &Value) {
    let (code, body) = env
        .arm(
            reqwest::Method::POST,
            "/_emulator/signout",
            Some(json!({"sessionId": session["sessionId"]})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

pub async fn live_sessions(env: &Env) -> Vec<Value> {
    let (_, sessions) = env.get("/_emulator/sessions").await;
    sessions["value"].as_array().unwrap().clone()
}

/// Runs `appattach rollout ARGS -n NAMESPACE`, as `kubectl appattach rollout` would.
pub async fn cli(env: &Env, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .arg("rollout")
        .args(args)
        .args(["-n", &env.ns.name])
        .env("KUBECONFIG", env.ns.cp.kubeconfig())
        .env("APPATTACH_LOG", "warn")
        .output()
        .await
        .unwrap();
    crate::support::outcome(&out)
}

pub async fn drained(env: &Env, pool: &str) -> Vec<String> {
    session_hosts(env, pool)
        .await
        .iter()
        .filter(|h| h["properties"]["allowNewSession"] == false)
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn weekday(days_from_today: i64) -> String {
    let d = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        + jiff::Span::new().days(days_from_today);
    format!("{:?}", d.weekday())
}
