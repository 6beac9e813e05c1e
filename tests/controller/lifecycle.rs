//! Suspend, reconcile policies, deletion, and restarts.

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::harness::*;
use crate::support::set;

async fn ready_package(env: &Env, name: &str) {
    env.apply_assigned(name, &[("hp-a", 0)]).await;
    env.wait_package(name, 1, 1).await;
}

async fn annotate(env: &Env, name: &str, policy: &str) {
    let patch = json!({"metadata": {"annotations": {"appattach.io/reconcile-policy": policy}}});
    env.ns
        .api("AppAttachPackage")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_package_writes_nothing() {
    let env = Env::new("suspend", Duration::from_millis(500)).await;
    ready_package(&env, "expenses").await;
    let suspended = set(package("expenses"), "/spec/suspend", json!(true));
    env.ns
        .apply(&set(suspended, "/spec/state", json!("Inactive")))
        .await
        .unwrap();
    env.wait_condition(
        "AppAttachPackage",
        "expenses",
        "Synced",
        "False",
        Some("Suspended"),
    )
    .await;
    let (_, b) = env.get(&env.package_path("expenses")).await;
    assert_eq!(
        b["properties"]["image"]["isActive"], true,
        "a suspended change is not written"
    );
    env.ns
        .apply(&set(package("expenses"), "/spec/state", json!("Inactive")))
        .await
        .unwrap();
    env.eventually("resumed and written", || async {
        env.get(&env.package_path("expenses")).await.1["properties"]["image"]["isActive"] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_reports_drift_and_never_corrects_it() {
    let env = Env::new("skip_policy", Duration::from_millis(500)).await;
    ready_package(&env, "expenses").await;
    annotate(&env, "expenses", "skip").await;
    // Drift made before the controller works under the policy would be corrected by a pass
    // still under the old one: wait until a pass says it only observes.
    poll("a pass under the skip policy", || async {
        let pkg = env
            .ns
            .api("AppAttachPackage")
            .get("expenses")
            .await
            .map_err(|e| e.to_string())?;
        let ready = pkg.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .unwrap_or_default();
        let message = ready["message"].as_str().unwrap_or_default();
        if message.contains("reconcile policy skip") {
            Ok(())
        } else {
            Err(ready.to_string())
        }
    })
    .await;
    env.arm(
        reqwest::Method::PATCH,
        &env.package_path("expenses"),
        Some(json!({"properties": {"image": {"isActive": false}}})),
    )
    .await;
    env.wait_condition(
        "AppAttachPackage",
        "expenses",
        "Ready",
        "False",
        Some("DriftDetected"),
    )
    .await;
    env.reset_counts().await;
    let path = env.package_path("expenses").to_ascii_lowercase();
    env.eventually("two more passes", || async {
        env.counts().await["byPath"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["method"] == "GET" && c["path"] == path && c["count"].as_u64().unwrap_or(0) >= 2
            })
    })
    .await;
    assert_eq!(env.counts().await["writes"], 0);
    assert_eq!(
        env.get(&env.package_path("expenses")).await.1["properties"]["image"]["isActive"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_removes_the_backend_resources_unless_detached() {
    let env = Env::new("deletion", Duration::from_secs(300)).await;
    ready_package(&env, "managed").await;
    ready_package(&env, "detached").await;
    annotate(&env, "detached", "detach-on-delete").await;
    env.wait_ready("AppAttachPackage", "detached").await;
    // A user is signed in with the managed package: its image must stay on the share.
    let session = env.signin("alice@contoso.com", "hp-a").await;
    assert_eq!(session["packages"].as_array().unwrap().len(), 2);
    for name in ["managed", "detached"] {
        env.ns
            .api("AppAttachPackage")
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    env.eventually("both objects are gone", || async {
        env.ns
            .api("AppAttachPackage")
            .get_opt("managed")
            .await
            .unwrap()
            .is_none()
            && env
                .ns
                .api("AppAttachPackage")
                .get_opt("detached")
                .await
                .unwrap()
                .is_none()
    })
    .await;
    assert_eq!(
        env.get(&env.package_path("managed")).await.0,
        404,
        "the managed package was removed"
    );
    assert!(
        env.roles("managed").await.is_empty(),
        "and its role assignments"
    );
    assert_eq!(
        env.get(&env.package_path("detached")).await.0,
        200,
        "the detached package stays"
    );
    assert_eq!(env.roles("detached").await.len(), 1);
    let in_use = env.wait_warning("managed", "ImageInUse").await;
    let note = in_use.note.unwrap_or_default();
    assert!(
        note.contains("1 session(s)") && note.contains(r"\\fs\apps\managed_1.0.0.0.vhdx"),
        "{note}"
    );
    // Its assignments now point at nothing, and say so.
    env.wait_condition(
        "HostPoolAssignment",
        "managed-pools",
        "Ready",
        "False",
        Some("PackageNotFound"),
    )
    .await;
    // The passes were counted, by kind and result, and timed.
    let metrics = env.metrics.render();
    for series in [
        r#"appattach_reconciles_total{kind="AppAttachPackage",result="success"} "#,
        r#"appattach_reconciles_total{kind="HostPoolAssignment",result="success"} "#,
        r#"appattach_reconcile_duration_seconds_count{kind="AppAttachPackage"} "#,
    ] {
        let count: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(count >= 1.0, "{series}{count}");
    }
}

/// The real binary, as its own process, so a restart is a kill -9 and nothing survives it.
fn spawn_controller(env: &Env) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args([
            "controller",
            "--arm-endpoint",
            &env.emulator.url(),
            "--subscription",
            SUB,
            "--resource-group",
            RG,
        ])
        .args(["--namespace", &env.ns.name, "--resync", "5m"])
        .env("KUBECONFIG", env.ns.cp.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("appattach controller starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_converges_without_duplicates() {
    let mut env = Env::new("restart", Duration::from_secs(300)).await;
    env.stop_controller().await;
    // Slow the backend's writes, so the process dies in the middle of a pass.
    env.arm(
        reqwest::Method::POST,
        "/_emulator/faults",
        Some(json!({"method": "PUT", "delayMs": 400, "count": 2})),
    )
    .await;
    env.ns.apply(&package("expenses")).await.unwrap();
    env.ns
        .apply(&pools("pilot", "expenses", &[("hp-a", 0), ("hp-b", 1)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            "people",
            "expenses",
            &[
                ("Group", "Finance", Some(FINANCE)),
                ("Group", "Sales", Some(SALES)),
            ],
        ))
        .await
        .unwrap();
    let mut first = spawn_controller(&env);
    env.eventually("the first backend write is under way", || async {
        env.counts().await["byMethod"]["PUT"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = spawn_controller(&env);
    env.wait_package("expenses", 2, 2).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(
        env.roles("expenses").await.len(),
        2,
        "no duplicate role assignments"
    );
    let (_, list) = env.get("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-avd/providers/Microsoft.DesktopVirtualization/appAttachPackages").await;
    assert_eq!(
        list["value"].as_array().unwrap().len(),
        1,
        "no duplicate packages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_after_the_objects_with_one_slot_reconciles_them_all() {
    // Every reconcile slot taken before the assignment caches are listed must not stall
    // the controller (a pass never waits for a cache; it comes back shortly).
    let mut env = Env::new("late_start", Duration::from_secs(300)).await;
    env.stop_controller().await;
    for name in ["one", "two", "three"] {
        env.apply_assigned(name, &[("hp-a", 0)]).await;
    }
    env.concurrency = 1;
    env.start_controller();
    for name in ["one", "two", "three"] {
        env.wait_package(name, 1, 1).await;
    }
}

/// A kubeconfig in `dir` naming an API server nobody listens for (port 9, discard).
fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Result<(u16, String), String> {
    let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| e.to_string())?))
}

/// The probes as a kubelet sees them: alive at once; ready only after the first full sync,
/// which `appattach_synced` says on /metrics too. Against an API server it cannot reach, the
/// process stays alive and not ready, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_say_alive_at_once_and_ready_after_the_first_sync() {
    let mut env = Env::new("probes", Duration::from_secs(300)).await;
    env.stop_controller().await;
    let unreachable = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(unreachable.path());
    for (config, reachable) in [
        (kubeconfig, false),
        (env.ns.cp.kubeconfig().to_path_buf(), true),
    ] {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
            .args(["controller", "--arm-endpoint", &env.emulator.url()])
            .args(["--subscription", SUB, "--resource-group", RG])
            .args(["--namespace", &env.ns.name])
            .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("appattach controller starts");
        let live = format!("{base}/livez");
        poll("the controller is alive", || async {
            match get(&live).await? {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let ready = format!("{base}/readyz");
        if reachable {
            poll("the controller is ready", || async {
                match get(&ready).await? {
                    (200, _) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
            let (_, metrics) = get(&format!("{base}/metrics")).await.unwrap();
            assert!(metrics.contains("\nappattach_synced 1\n"), "{metrics}");
            assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
        } else {
            let (status, body) = get(&ready).await.unwrap();
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("first sync"), "{body}");
            let (_, metrics) = get(&format!("{base}/metrics")).await.unwrap();
            assert!(metrics.contains("\nappattach_synced 0\n"), "{metrics}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// One controller process with leader election on, its probes on a port of its own.
struct Replica {
    child: std::process::Child,
    base: String,
}

fn spawn_replica(env: &Env, identity: &str) -> Replica {
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["controller", "--arm-endpoint", &env.emulator.url()])
        .args(["--subscription", SUB, "--resource-group", RG])
        .args(["--namespace", &env.ns.name, "--resync", "5m"])
        .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
        .args([
            "--leader-elect",
            "--leader-election-namespace",
            &env.ns.name,
        ])
        .args(["--leader-election-identity", identity])
        .args(["--leader-election-duration", "6"])
        .env("KUBECONFIG", env.ns.cp.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("appattach controller starts");
    Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

impl Replica {
    async fn leader_gauge(&self) -> Result<String, String> {
        let (_, metrics) = get(&format!("{}/metrics", self.base)).await?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("appattach_leader "))
            .map(String::from)
            .ok_or_else(|| format!("no appattach_leader in {metrics}"))
    }

    async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.base);
        poll("the replica is ready", || async {
            match get(&url).await? {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
}

async fn holder(env: &Env) -> Option<String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(env.ns.client.clone(), &env.ns.name);
    leases
        .get_opt("appattach-controller")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn wait_holder(env: &Env, identity: &str) {
    poll(&format!("{identity} holds the Lease"), || async {
        match holder(env).await {
            Some(h) if h == identity => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Two replicas: one leads and reconciles, the other waits ready. SIGTERM releases the Lease
/// at once (it no longer names the old leader when the process is gone) and the other leads
/// and finishes the work; a replica killed with SIGKILL is replaced after the Lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_hands_over_on_sigterm_and_on_death() {
    let mut env = Env::new("leader", Duration::from_secs(300)).await;
    env.stop_controller().await;
    let mut a = spawn_replica(&env, "replica-a");
    wait_holder(&env, "replica-a").await;
    let mut b = spawn_replica(&env, "replica-b");
    b.wait_ready().await;
    a.wait_ready().await;
    assert_eq!(a.leader_gauge().await.unwrap(), "1");
    assert_eq!(b.leader_gauge().await.unwrap(), "0");
    assert_eq!(holder(&env).await.as_deref(), Some("replica-a"));
    env.apply_assigned("one", &[("hp-a", 0)]).await;
    env.wait_package("one", 1, 1).await;

    // SIGTERM: a exits cleanly and its Lease is released, not left to expire.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = a.child.wait().unwrap();
    assert!(exit.success(), "SIGTERM exits 0: {exit}");
    assert_ne!(
        holder(&env).await.as_deref(),
        Some("replica-a"),
        "the Lease still names the replica that shut down"
    );
    wait_holder(&env, "replica-b").await;
    poll("b says it leads", || async {
        match b.leader_gauge().await?.as_str() {
            "1" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    env.apply_assigned("two", &[("hp-a", 0)]).await;
    env.wait_package("two", 1, 1).await;

    // SIGKILL: nothing is released; the waiting replica takes over once the Lease expires.
    let mut c = spawn_replica(&env, "replica-c");
    c.wait_ready().await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    wait_holder(&env, "replica-c").await;
    env.apply_assigned("three", &[("hp-a", 0)]).await;
    env.wait_package("three", 1, 1).await;
    c.child.kill().unwrap();
    c.child.wait().unwrap();
}

/// `--log-format json` writes one JSON object a line, with the level and the message.
#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["controller", "--log-format", "json"])
        .args(["--arm-endpoint", "http://127.0.0.1:9"])
        .args(["--subscription", SUB, "--resource-group", RG])
        .args([
            "--metrics-bind-address",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("appattach controller starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a log line within a minute");
    child.kill().unwrap();
    child.wait().unwrap();
    let entry: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["level"], "INFO", "{line}");
    assert!(entry["fields"]["message"].is_string(), "{line}");
}
