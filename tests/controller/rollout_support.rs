//! What the rollout tests share: the three ring pools, images on the test share, a package
//! Ready at 1.0.0.0, waiting on the rollout, reading the backend and the emulator's write
//! log, and killing the controller at a chosen point.

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

/// Puts a real VHDX image of `package` (a package file) on the test share, as `appattach
/// image create` makes it.
pub fn put_real_image(env: &Env, name: &str, version: &str, package: &std::path::Path) {
    use appattach_operator::inspect::create::{CreateOptions, DiskFormat, create_image};
    create_image(
        &CreateOptions {
            package: package.to_path_buf(),
            format: DiskFormat::Vhdx,
            out: env.share.join(format!("{name}_{version}.vhdx")),
            root: None,
            fixed: false,
        },
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("making the image of {}: {e}", package.display()));
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

/// Runs `appattach rollout ARGS -n NAMESPACE` in the background, its output piped.
pub fn cli_spawn(env: &Env, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .arg("rollout")
        .args(args)
        .args(["-n", &env.ns.name])
        .env("KUBECONFIG", env.ns.cp.kubeconfig())
        .env("APPATTACH_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The ARM writes the emulator applied so far, oldest first (`GET /_emulator/writes`).
pub async fn writes(env: &Env) -> Vec<Value> {
    let (code, log) = env.get("/_emulator/writes").await;
    assert_eq!(code, 200, "{log}");
    log["value"].as_array().unwrap().clone()
}

/// The sequence number of the last write applied so far (0 before any).
pub async fn last_seq(env: &Env) -> u64 {
    writes(env)
        .await
        .last()
        .map_or(0, |w| w["seq"].as_u64().unwrap())
}

/// One write, on one line, for assertion messages: `#12 <time> PUT <path> <body>`, the
/// path from its resource type on and the body cut short.
pub fn describe(w: &Value) -> String {
    let body = w["body"].to_string();
    let mut short: String = body.chars().take(160).collect();
    if short.len() < body.len() {
        short.push('…');
    }
    format!("{} {short}", write_line(w))
}

/// A write without its body: `#12 <time> PUT <path from the resource type on>`.
pub fn write_line(w: &Value) -> String {
    const PROVIDER: &str = "/providers/microsoft.desktopvirtualization/";
    let path = w["path"].as_str().unwrap_or_default();
    let short = path
        .find(PROVIDER)
        .map_or(path, |i| &path[i + PROVIDER.len()..]);
    format!(
        "#{} {} {} {short}",
        w["seq"],
        w["at"].as_str().unwrap_or_default(),
        w["method"].as_str().unwrap_or_default()
    )
}

/// The last `n` writes, one per line.
pub fn tail(writes: &[Value], n: usize) -> String {
    writes[writes.len().saturating_sub(n)..]
        .iter()
        .map(describe)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// What the host pools ran after one write to an app attach package.
pub struct PoolsAfter {
    /// The write.
    pub write: Value,
    /// Host pool name (lowercased) → the versions of the active packages that reference it.
    pub pools: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl PoolsAfter {
    pub fn runs(&self, pool: &str, version: &str) -> bool {
        self.pools.get(pool).is_some_and(|v| v.contains(version))
    }

    pub fn line(&self) -> String {
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|(p, v)| format!("{p}={}", v.iter().cloned().collect::<Vec<_>>().join("+")))
            .collect();
        format!("{} -> [{}]", write_line(&self.write), pools.join(", "))
    }
}

/// Replays the write log's writes to the app attach packages whose backend names start
/// with `prefix` (PUT sets a package, PATCH merges its image and replaces its host pool
/// references, DELETE removes it): what every host pool ran after each of them.
pub fn replay_app_attach(writes: &[Value], prefix: &str) -> Vec<PoolsAfter> {
    let prefix = prefix.to_ascii_lowercase();
    let mut packages: std::collections::BTreeMap<String, Value> = Default::default();
    let mut out = vec![];
    for w in writes {
        let path = w["path"].as_str().unwrap();
        let Some((_, name)) = path.split_once("/appattachpackages/") else {
            continue;
        };
        if name.contains('/') || !name.starts_with(&prefix) {
            continue; // role assignments under it, or another object's
        }
        let props = &w["body"]["properties"];
        match w["method"].as_str().unwrap() {
            "PUT" => {
                packages.insert(name.to_string(), props.clone());
            }
            "PATCH" => {
                let held = packages
                    .entry(name.to_string())
                    .or_insert_with(|| json!({}));
                if let Some(image) = props["image"].as_object() {
                    for (k, v) in image {
                        held["image"][k] = v.clone();
                    }
                }
                if !props["hostPoolReferences"].is_null() {
                    held["hostPoolReferences"] = props["hostPoolReferences"].clone();
                }
            }
            "DELETE" => {
                packages.remove(name);
            }
            _ => continue,
        }
        let mut pools: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for p in packages.values() {
            if p["image"]["isActive"] == false {
                continue;
            }
            let version = p["image"]["version"].as_str().unwrap_or("?").to_string();
            for r in p["hostPoolReferences"].as_array().into_iter().flatten() {
                let pool = r.as_str().unwrap().rsplit('/').next().unwrap();
                pools
                    .entry(pool.to_ascii_lowercase())
                    .or_default()
                    .insert(version.clone());
            }
        }
        out.push(PoolsAfter {
            write: w.clone(),
            pools,
        });
    }
    out
}

/// The replay, one write per line.
pub fn timeline(states: &[PoolsAfter]) -> String {
    states
        .iter()
        .map(PoolsAfter::line)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Whether `version` reached the host pools ring by ring so far: no write gave it to pools
/// of two rings, or to a ring before every pool of the rings below had it, and a ring after
/// the first came at least `soak` after the ring before it. `Ok`: when each ring reached so
/// far got it; `Err`: what broke the order, with the replay.
pub fn ring_by_ring(
    states: &[PoolsAfter],
    version: &str,
    rings: &[(&str, i32)],
    soak: jiff::SignedDuration,
) -> Result<Vec<(i32, jiff::Timestamp)>, String> {
    let ring_of = |p: &str| {
        rings
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(p))
            .map(|r| r.1)
    };
    let mut reached = std::collections::BTreeSet::new();
    let mut firsts: Vec<(i32, jiff::Timestamp)> = vec![];
    for s in states {
        let new: Vec<&str> = rings
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !reached.contains(*n) && s.runs(n, version))
            .collect();
        if new.is_empty() {
            continue;
        }
        let new_rings: std::collections::BTreeSet<i32> =
            new.iter().filter_map(|n| ring_of(n)).collect();
        if new_rings.len() > 1 {
            return Err(format!(
                "{version} reached pools of rings {new_rings:?} ({new:?}) in one write, not ring by ring:\n  {}\nreplayed:\n  {}",
                s.line(),
                timeline(states)
            ));
        }
        let ring = *new_rings.iter().next().unwrap();
        let behind: Vec<&str> = rings
            .iter()
            .filter(|(n, r)| *r < ring && !reached.contains(*n))
            .map(|(n, _)| *n)
            .collect();
        if !behind.is_empty() {
            return Err(format!(
                "{version} reached ring {ring} ({new:?}) before {behind:?} of an earlier ring:\n  {}\nreplayed:\n  {}",
                s.line(),
                timeline(states)
            ));
        }
        let at = time(&s.write["at"]);
        if firsts.last().is_none_or(|(r, _)| *r != ring) {
            if let Some((r, t)) = firsts.last()
                && at < *t + soak
            {
                return Err(format!(
                    "ring {ring} got {version} at {at}, less than the soak {soak} after ring {r} ({t}):\nreplayed:\n  {}",
                    timeline(states)
                ));
            }
            firsts.push((ring, at));
        }
        reached.extend(new);
    }
    Ok(firsts)
}

/// Fails unless `version` reached every host pool, ring by ring ([`ring_by_ring`]).
/// Returns when each ring got it.
pub fn assert_ring_by_ring(
    states: &[PoolsAfter],
    version: &str,
    rings: &[(&str, i32)],
    soak: jiff::SignedDuration,
) -> Vec<(i32, jiff::Timestamp)> {
    let firsts = ring_by_ring(states, version, rings, soak).unwrap_or_else(|e| panic!("{e}"));
    let last = states.last().map(|s| s.line()).unwrap_or_default();
    assert!(
        rings
            .iter()
            .all(|(n, _)| states.iter().any(|s| s.runs(n, version))),
        "{version} never reached every pool (last: {last}):\nreplayed:\n  {}",
        timeline(states)
    );
    firsts
}

/// Whether every host pool that had run a version ran one after each later write (every
/// switch adds the version a pool moves to before it removes the one it leaves); `Err`
/// names the write that left a pool without any, with the replay.
pub fn never_without_a_version(states: &[PoolsAfter], pools: &[&str]) -> Result<(), String> {
    for pool in pools {
        let mut had = false;
        for s in states {
            let now = s.pools.get(*pool).is_some_and(|v| !v.is_empty());
            if had && !now {
                return Err(format!(
                    "after this write {pool} ran no version at all:\n  {}\nreplayed:\n  {}",
                    s.line(),
                    timeline(states)
                ));
            }
            had |= now;
        }
    }
    Ok(())
}

/// Fails if a host pool was ever left without a version ([`never_without_a_version`]).
/// Asserts that, after the last write, each of `pools` runs `version` and no other.
pub fn assert_all_run_alone(states: &[PoolsAfter], pools: &[&str], version: &str) {
    let last = states.last().expect("writes to replay");
    for pool in pools {
        assert_eq!(
            last.pools
                .get(*pool)
                .map(|v| v.iter().cloned().collect::<Vec<_>>()),
            Some(vec![version.to_string()]),
            "after the last write, {pool} runs {version} alone:\n  {}",
            timeline(states)
        );
    }
}

pub fn assert_never_without_a_version(states: &[PoolsAfter], pools: &[&str]) {
    if let Err(e) = never_without_a_version(states, pools) {
        panic!("{e}");
    }
}

/// Adds a fault rule to the emulator.
pub async fn add_fault(env: &Env, rule: Value) {
    let (code, body) = env
        .arm(
            reqwest::Method::POST,
            "/_emulator/faults",
            Some(rule.clone()),
        )
        .await;
    assert!(code < 300, "adding {rule}: {body}");
}

/// A rule that holds the next matching request's answer for ten minutes after it took
/// effect: the caller waits on a write that is already done.
pub fn hold_after(method: &str, path_contains: &str) -> Value {
    json!({"method": method, "pathContains": path_contains, "delayAfterMs": 600_000, "count": 1})
}

/// A rule that lets the next matching request through (a 1 ms delay): placed before a
/// hold, it makes the hold take the request after it.
pub fn pass(method: &str, path_contains: &str) -> Value {
    json!({"method": method, "pathContains": path_contains, "delayMs": 1, "count": 1})
}

/// Kills the controller where a hold caught it, and starts another: waits until every
/// fault rule has fired (the last one holds a request, so the controller is blocked on
/// it) and `held` holds of the write log, then aborts the controller task, clears the
/// faults and starts a new controller.
pub async fn kill_when_held(
    env: &mut Env,
    name: &str,
    what: &str,
    held: impl Fn(&[Value]) -> bool,
) {
    poll(&format!("{name}: the controller held {what}"), || async {
        let faults = env.get("/_emulator/faults").await.1;
        let log = writes(env).await;
        if faults == json!([]) && held(&log) {
            return Ok(());
        }
        let st = status(env, name).await;
        Err(format!(
            "faults still armed {faults}; rollout {}; last writes:\n  {}",
            st["rollout"],
            tail(&log, 12)
        ))
    })
    .await;
    env.stop_controller().await;
    env.arm(reqwest::Method::DELETE, "/_emulator/faults", None)
        .await;
    env.start_controller();
}

/// Every app attach package of the backend.
pub async fn backend_packages(env: &Env) -> Vec<Value> {
    let (code, list) = env
        .get(&format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DesktopVirtualization/appAttachPackages",
            crate::harness::SUB,
            crate::harness::RG
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    list["value"].as_array().unwrap().clone()
}

/// The status's host pools `pools` never switched to a new version.
pub fn assert_not_switched(status: &Value, pools: &[&str]) {
    for pool in pools {
        let row = status["hostPools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *pool)
            .unwrap();
        assert!(row["switchedAt"].is_null(), "{row}");
    }
}

/// Applies `version` of package `name` with these rollout settings and waits for its
/// rollout to fail; returns the object.
pub async fn version_fails(env: &Env, name: &str, version: &str, rollout: Value) -> Value {
    env.ns
        .apply(&manifest(name, version, rollout))
        .await
        .unwrap();
    env.wait_condition(
        "AppAttachPackage",
        name,
        "Progressing",
        "False",
        Some("RolloutFailed"),
    )
    .await
}
