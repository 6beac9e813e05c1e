//! "One pass, one decision" (DESIGN.md §8), from the outside: status reports what the
//! backend holds, a version reaches host pools only through a rollout, every switch adds
//! before it removes, and a side effect that cannot be read back is done at most once even
//! when the controller dies right after it. The oracle is the emulator's ordered log of
//! applied writes (`GET /_emulator/writes`), replayed; kills happen while the controller
//! waits on a request a fault holds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Env, poll_within, pools};
use crate::rollout_support::*;
use crate::support::set;

const SOAK: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

fn rollout_settings() -> Value {
    json!({"soak": "1s"})
}

/// Fails unless the package still runs 1.0.0.0 everywhere, by its status and in the
/// backend: the refused 2.0.0.0 was written nowhere.
async fn assert_still_at_v1(env: &Env, name: &str, obj: &Value, why: &str) {
    let st = &obj["status"];
    assert_eq!(
        st["currentVersion"], "1.0.0.0",
        "{why}: status.currentVersion must say what the backend runs (1.0.0.0); status: {st}"
    );
    let rows = st["hostPools"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        rows.len(),
        3,
        "{why}: a row per existing pool; status: {st}"
    );
    for row in &rows {
        assert_eq!(
            row["version"], "1.0.0.0",
            "{why}: status.hostPools[{}].version must be what the pool runs (1.0.0.0); status: {st}",
            row["name"]
        );
    }
    let held = backend_packages(env).await;
    let summary: Vec<String> = held
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p["name"],
                p["properties"]["image"]["version"],
                p["properties"]["hostPoolReferences"]
            )
        })
        .collect();
    assert!(
        held.iter()
            .all(|p| p["properties"]["image"]["version"] == "1.0.0.0"),
        "{why}: no backend package may hold 2.0.0.0; the backend holds {summary:?}"
    );
    assert_eq!(
        refs(env, &env.backend_name(name)).await,
        Some(vec!["hp-r0".into(), "hp-r1".into(), "hp-r2".into()]),
        "{why}: every pool stays on 1.0.0.0; the backend holds {summary:?}"
    );
    let log = writes(env).await;
    let v2: Vec<String> = log
        .iter()
        .filter(|w| w["body"]["properties"]["image"]["version"] == "2.0.0.0")
        .map(describe)
        .collect();
    assert!(
        v2.is_empty(),
        "{why}: nothing of 2.0.0.0 may be written; written: {v2:#?}"
    );
}

/// Fails unless 2.0.0.0 (already in the spec, no longer blocked) rolls out ring by ring to
/// completion, as revision 1 from 1.0.0.0, with no pool ever left without a version.
async fn assert_rolls_out_ring_by_ring(env: &Env, name: &str) {
    let st = poll_within(
        &format!("{name}: the rollout to 2.0.0.0 complete"),
        Duration::from_secs(90),
        || async {
            let st = status(env, name).await;
            // A write out of order fails at once, not at the deadline.
            let log = writes(env).await;
            let states = replay_app_attach(&log, &env.backend_name(name));
            if let Err(e) = ring_by_ring(&states, "2.0.0.0", &RINGS, SOAK)
                .and_then(|_| never_without_a_version(&states, &["hp-r0", "hp-r1", "hp-r2"]))
            {
                panic!("{e}\nstatus: {st}");
            }
            if at(&st["rollout"], "Complete") && st["rollout"]["target"]["version"] == "2.0.0.0" {
                return Ok(st);
            }
            Err(format!("status {st}\nlast writes:\n  {}", tail(&log, 12)))
        },
    )
    .await;
    assert_eq!(st["currentVersion"], "2.0.0.0", "{st}");
    for row in st["hostPools"].as_array().unwrap() {
        assert_eq!(row["version"], "2.0.0.0", "{st}");
    }
    let states = replay_app_attach(&writes(env).await, &env.backend_name(name));
    let rings = assert_ring_by_ring(&states, "2.0.0.0", &RINGS, SOAK);
    assert_eq!(
        rings.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "replayed:\n  {}",
        timeline(&states)
    );
    assert_never_without_a_version(&states, &["hp-r0", "hp-r1", "hp-r2"]);
    assert_all_run_alone(&states, &["hp-r0", "hp-r1", "hp-r2"], "2.0.0.0");

    let (ok, text) = cli(env, &["history", name]).await;
    let listed = text.lines().any(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        c.len() >= 4 && c[..4] == ["1", "2.0.0.0", "1.0.0.0", "Complete"]
    });
    assert!(
        ok && listed,
        "`appattach rollout history {name}` must list revision 1, 2.0.0.0 from 1.0.0.0, Complete:\n{text}"
    );
}

#[tokio::test]
async fn a_version_change_refused_for_an_expired_certificate_waits_and_then_rolls_out_ring_by_ring()
{
    let env = Env::staging("one-pass-cert").await;
    ready_at_v1(&env, "crt", rollout_settings()).await;
    put_image(&env, "crt", "2.0.0.0");
    // The new version and an expired, untimestamped certificate in one apply.
    let expired = set(
        manifest("crt", "2.0.0.0", rollout_settings()),
        "/spec/certificate",
        json!({"subject": "CN=Contoso", "expiry": "2020-01-01T00:00:00Z", "timestamped": false}),
    );
    env.ns.apply(&expired).await.unwrap();
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "crt",
            "Ready",
            "False",
            Some("CertificateExpired"),
        )
        .await;
    assert_still_at_v1(&env, "crt", &obj, "refused for its certificate").await;

    // The certificate fixed (a later expiry, timestamped): now the version rolls out.
    env.ns
        .apply(&manifest("crt", "2.0.0.0", rollout_settings()))
        .await
        .unwrap();
    assert_rolls_out_ring_by_ring(&env, "crt").await;
}

#[tokio::test]
async fn a_version_change_while_a_pool_is_missing_waits_and_then_rolls_out_ring_by_ring() {
    let env = Env::staging("one-pass-missing-pool").await;
    ready_at_v1(&env, "gon", rollout_settings()).await;
    let mut with_missing = RINGS.to_vec();
    with_missing.push(("hp-gone", 1));
    env.ns
        .apply(&pools("gon-pools", "gon", &with_missing))
        .await
        .unwrap();
    env.wait_condition(
        "AppAttachPackage",
        "gon",
        "Ready",
        "False",
        Some("HostPoolNotFound"),
    )
    .await;

    put_image(&env, "gon", "2.0.0.0");
    env.ns
        .apply(&manifest("gon", "2.0.0.0", rollout_settings()))
        .await
        .unwrap();
    // Ready=False HostPoolNotFound for the new generation.
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "gon",
            "Ready",
            "False",
            Some("HostPoolNotFound"),
        )
        .await;
    assert_still_at_v1(&env, "gon", &obj, "blocked by a missing host pool").await;

    // The missing pool taken out of the assignment: now the version rolls out.
    env.ns
        .apply(&pools("gon-pools", "gon", &RINGS))
        .await
        .unwrap();
    assert_rolls_out_ring_by_ring(&env, "gon").await;
}

/// An MSIX app attach package on hp-m (three hosts, no sessions), one host at a time,
/// inside a maintenance window open now.
fn msix(name: &str, version: &str) -> Value {
    let rollout = json!({"soak": "1s", "maxUnavailableHosts": 1,
        "maintenanceWindow": {"dayOfWeek": weekday(-1), "startTime": "00:00", "duration": "72h", "timeZone": "UTC"}});
    set(
        manifest(name, version, rollout),
        "/spec/mode",
        json!("MsixAppAttach"),
    )
}

fn msix_full_name(name: &str, version: &str) -> String {
    appattach_operator::domain::naming::full_name(
        &format!("Contoso.{name}"),
        version,
        "x64",
        "CN=Contoso",
    )
    .to_ascii_lowercase()
}

/// Where an MSIX rollout's controller is killed.
#[derive(Debug, Clone, Copy)]
enum KilledAfter {
    /// Right after the target version's msixPackages PUT took effect on the pool.
    Replacement,
    /// Right after the first host was drained (allowNewSession=false took effect).
    FirstDrain,
    /// Right after the first drained host was undrained again.
    FirstUndrain,
}

fn allow_new_session(w: &Value) -> Option<bool> {
    (w["method"] == "PATCH" && w["path"].as_str().unwrap().contains("/sessionhosts/"))
        .then(|| w["body"]["properties"]["allowNewSession"].as_bool())
        .flatten()
}

/// How often each msixPackages PUT or DELETE path, and each host's allowNewSession
/// PATCH in each direction, was applied.
fn msix_write_counts(log: &[Value]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for w in log {
        let path = w["path"].as_str().unwrap();
        let method = w["method"].as_str().unwrap();
        let key = if path.contains("/msixpackages/") {
            format!("{method} {path}")
        } else if let Some(allow) = allow_new_session(w) {
            format!("{method} {path} allowNewSession={allow}")
        } else {
            continue;
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn more_than_once(counts: &BTreeMap<String, u64>) -> Vec<(&String, &u64)> {
    counts.iter().filter(|(_, n)| **n > 1).collect()
}

/// Rolls an MSIX package from 1.0.0.0 to 2.0.0.0, kills the controller at `kill`, restarts
/// it, and checks the rollout completes without writing anything twice.
async fn msix_rollout_killed(kill: KilledAfter) {
    let tag = format!("{kill:?}").to_ascii_lowercase();
    let mut env = Env::staging(&format!("one-pass-msix-{tag}")).await;
    let name = "mk";
    put_image(&env, name, "1.0.0.0");
    put_image(&env, name, "2.0.0.0");
    env.ns.apply(&msix(name, "1.0.0.0")).await.unwrap();
    env.ns
        .apply(&pools("mk-pools", name, &[("hp-m", 0)]))
        .await
        .unwrap();
    env.wait_package(name, 1, 0).await;
    let start = last_seq(&env).await;
    let old = msix_full_name(name, "1.0.0.0");
    let new = msix_full_name(name, "2.0.0.0");
    let since = |log: &[Value]| -> Vec<Value> {
        log.iter()
            .filter(|w| w["seq"].as_u64().unwrap() > start)
            .cloned()
            .collect()
    };

    let target_put = format!("/msixpackages/{new}");
    match kill {
        KilledAfter::Replacement => add_fault(&env, hold_after("PUT", &target_put)).await,
        KilledAfter::FirstDrain => add_fault(&env, hold_after("PATCH", "/sessionHosts/")).await,
        KilledAfter::FirstUndrain => {
            add_fault(&env, pass("PATCH", "/sessionHosts/")).await;
            add_fault(&env, hold_after("PATCH", "/sessionHosts/")).await;
        }
    }
    env.ns.apply(&msix(name, "2.0.0.0")).await.unwrap();
    let held = |log: &[Value]| {
        let log = since(log);
        match kill {
            KilledAfter::Replacement => log.iter().any(|w| {
                w["method"] == "PUT" && w["path"].as_str().unwrap().ends_with(&target_put)
            }),
            KilledAfter::FirstDrain => log.iter().any(|w| allow_new_session(w) == Some(false)),
            KilledAfter::FirstUndrain => log.iter().any(|w| allow_new_session(w) == Some(true)),
        }
    };
    kill_when_held(&mut env, name, &format!("{kill:?}"), held).await;
    // The kill point is the one meant: the last write before the kill is the held one.
    let before_kill = since(&writes(&env).await);
    let last = before_kill.last().cloned().unwrap_or_default();
    let meant = match kill {
        KilledAfter::Replacement => last["path"].as_str().unwrap_or("").ends_with(&target_put),
        KilledAfter::FirstDrain => allow_new_session(&last) == Some(false),
        KilledAfter::FirstUndrain => allow_new_session(&last) == Some(true),
    };
    assert!(
        meant,
        "{kill:?}: the controller was not killed where meant; writes so far:\n  {}",
        tail(&before_kill, 20)
    );

    let st = poll_within(
        &format!("{name}: the MSIX rollout complete after a kill right after the {kill:?}"),
        Duration::from_secs(60),
        || async {
            let st = status(&env, name).await;
            if at(&st["rollout"], "Complete") {
                return Ok(st);
            }
            let log = since(&writes(&env).await);
            Err(format!(
                "rollout {}; hosts drained now {:?}; written more than once so far: {:?}; writes since the version change:\n  {}",
                st["rollout"],
                drained(&env, "hp-m").await,
                more_than_once(&msix_write_counts(&log)),
                tail(&log, 30)
            ))
        },
    )
    .await;

    let log = since(&writes(&env).await);
    let listing = format!(
        "killed right after the {kill:?}; writes since the version change:\n  {}",
        tail(&log, 60)
    );
    let msix_path = |full: &str| format!("{}/msixPackages/{full}", env.pool_id("hp-m"));
    assert_eq!(
        env.get(&msix_path(&new)).await.0,
        200,
        "2.0.0.0 on hp-m: {listing}\n{st}"
    );
    assert_eq!(
        env.get(&msix_path(&old)).await.0,
        404,
        "1.0.0.0 gone from hp-m: {listing}\n{st}"
    );
    assert!(
        drained(&env, "hp-m").await.is_empty(),
        "no host left drained: {listing}\n{st}"
    );
    let counts = msix_write_counts(&log);
    let twice = more_than_once(&counts);
    assert!(
        twice.is_empty(),
        "written more than once across the kill: {twice:#?}\n{listing}"
    );
    let puts: Vec<&String> = counts
        .keys()
        .filter(|k| k.starts_with("PUT ") && k.contains("/msixpackages/"))
        .collect();
    assert_eq!(puts.len(), 1, "one msixPackages PUT: {listing}");
    assert!(puts[0].ends_with(&new), "{listing}");
}

#[tokio::test]
async fn an_msix_rollout_killed_after_a_pool_was_replaced_completes_without_repeating_writes() {
    msix_rollout_killed(KilledAfter::Replacement).await;
}

#[tokio::test]
async fn an_msix_rollout_killed_after_a_drain_or_an_undrain_completes_without_repeating_writes() {
    for kill in [KilledAfter::FirstDrain, KilledAfter::FirstUndrain] {
        msix_rollout_killed(kill).await;
    }
}

#[tokio::test]
async fn users_are_notified_at_most_once_when_the_controller_dies_between_sending_and_recording() {
    let mut env = Env::staging("one-pass-notify").await;
    let rollout = json!({"soak": "1s", "notifyUsers": true});
    ready_at_v1(&env, "ntf", rollout.clone()).await;
    // Two sessions on ring 0's pool, one on ring 1's, all at 1.0.0.0.
    let sessions = [
        env.signin("alice@contoso.com", "hp-r0").await,
        env.signin("alice@contoso.com", "hp-r0").await,
        env.signin("alice@contoso.com", "hp-r1").await,
    ];
    let ids: Vec<String> = sessions
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    let sent_to = |log: &[Value]| -> BTreeMap<String, u64> {
        let mut sent = BTreeMap::new();
        for w in log {
            if w["method"] == "POST"
                && let Some(id) = w["path"].as_str().unwrap().strip_suffix("/sendmessage")
            {
                *sent.entry(id.to_string()).or_default() += 1;
            }
        }
        sent
    };
    // The first message goes through; the second takes effect, and its answer is held:
    // the controller dies after sending it, before it could record it.
    add_fault(&env, pass("POST", "/sendMessage")).await;
    add_fault(&env, hold_after("POST", "/sendMessage")).await;
    put_image(&env, "ntf", "2.0.0.0");
    env.ns
        .apply(&manifest("ntf", "2.0.0.0", rollout))
        .await
        .unwrap();
    kill_when_held(&mut env, "ntf", "the second sendMessage", |log| {
        sent_to(log).values().sum::<u64>() >= 2
    })
    .await;

    let st = wait_rollout(&env, "ntf", "complete after the kill", |r| {
        at(r, "Complete")
    })
    .await;
    let log = writes(&env).await;
    let sent = sent_to(&log);
    let messages: Vec<String> = log
        .iter()
        .filter(|w| w["path"].as_str().unwrap().ends_with("/sendmessage"))
        .map(describe)
        .collect();
    for (id, n) in &sent {
        assert!(
            *n <= 1,
            "session {id} was sent {n} messages; sendMessage writes:\n  {}",
            messages.join("\n  ")
        );
    }
    let delivered: BTreeMap<String, usize> = live_sessions(&env)
        .await
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_ascii_lowercase(),
                s["messages"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    for id in &ids {
        assert!(
            delivered.get(id).copied().unwrap_or(0) <= 1,
            "session {id} got {:?} messages: {delivered:?}",
            delivered.get(id)
        );
    }
    let total: u64 = sent.values().sum();
    assert!(
        total >= 2,
        "the two sent before the kill: {}",
        messages.join("\n  ")
    );
    assert_eq!(
        st["rollout"]["notifiedSessions"],
        total,
        "status.rollout.notifiedSessions counts the messages sent; sendMessage writes:\n  {}\nstatus: {st}",
        messages.join("\n  ")
    );
}

/// A package Ready at 1.0.0.0 on the ring pools, whose 2.0.0.0 (image missing from the
/// share) failed on ring 0 and rolled back; returns the status.
async fn failed_at_v2(env: &Env, name: &str) -> Value {
    ready_at_v1(env, name, rollout_settings()).await;
    version_fails(env, name, "2.0.0.0", rollout_settings()).await["status"].clone()
}

#[tokio::test]
async fn a_rollback_puts_the_old_version_back_on_each_pool_before_the_new_one_leaves_it() {
    let env = Env::staging("one-pass-rollback").await;
    let st = failed_at_v2(&env, "rbk").await;
    let states = replay_app_attach(&writes(&env).await, &env.backend_name("rbk"));
    // Ring 0 did switch to 2.0.0.0 before it failed there.
    assert!(
        states.iter().any(|s| s.runs("hp-r0", "2.0.0.0")),
        "ring 0 never ran 2.0.0.0:\n  {}\nstatus {st}",
        timeline(&states)
    );
    assert_never_without_a_version(&states, &["hp-r0", "hp-r1", "hp-r2"]);
    assert_all_run_alone(&states, &["hp-r0", "hp-r1", "hp-r2"], "1.0.0.0");
}

#[tokio::test]
async fn rollout_status_watch_waits_for_the_controller_to_observe_a_new_generation() {
    use tokio::io::AsyncReadExt;

    let mut env = Env::staging("one-pass-watch").await;
    failed_at_v2(&env, "wch").await;
    // A new spec the controller has not seen: it is stopped.
    env.stop_controller().await;
    put_image(&env, "wch", "3.0.0.0");
    env.ns
        .apply(&manifest("wch", "3.0.0.0", rollout_settings()))
        .await
        .unwrap();
    let started = Instant::now();
    let (ok, text) = cli(&env, &["status", "wch", "--watch", "--timeout", "3s"]).await;
    let waited = started.elapsed();
    assert!(
        !ok && !text.contains("rollout of wch failed")
            && text.contains("waiting for the controller to observe generation")
            && waited >= Duration::from_millis(2900),
        "while the controller has not observed the spec of 3.0.0.0, `rollout status --watch --timeout 3s` must wait (and time out), not report the previous generation's failure; it exited {} after {waited:?}:\n{text}",
        if ok { "0" } else { "1" }
    );

    // Watching from before the controller starts, until 3.0.0.0 is complete.
    let mut watch = cli_spawn(&env, &["status", "wch", "--watch", "--timeout", "2m"]);
    let mut stdout = watch.stdout.take().unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(60), stdout.read(&mut first))
        .await
        .expect("`rollout status --watch` printed nothing within a minute")
        .unwrap();
    first.truncate(n);
    env.start_controller();
    let mut rest = vec![];
    stdout.read_to_end(&mut rest).await.unwrap();
    let out = watch.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("3.0.0.0") && text.contains("Complete"),
        "`rollout status --watch` exits 0 once 3.0.0.0 is complete; it exited {:?}:\n{text}",
        out.status.code()
    );
    let st = status(&env, "wch").await;
    assert_eq!(st["currentVersion"], "3.0.0.0", "{st}");
}
