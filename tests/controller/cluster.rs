//! Running as in a cluster: the real binary as its own processes, with its probes, leader
//! election, the identity deploy/ gives it, its logs, and the failures a cluster brings (an
//! API server out of reach, CRDs not installed, a network partition, bad flags).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::Value;

use prometheus_parse::{LineInfo, Scrape};

use crate::harness::*;
use crate::support::repo_path;

const BIN: &str = env!("CARGO_BIN_EXE_appattach");

/// A controller process: where its probes answer, and its log lines as they come. Killed
/// when dropped, so a failing test leaves no process behind.
struct Proc {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

/// Starts `appattach controller ARGS` with this kubeconfig, its probes on a free port.
fn launch(kubeconfig: &Path, args: &[String], envs: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("controller")
        .args(args)
        .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("appattach controller starts");
    let stderr = child.stderr.take().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
        lines,
    }
}

impl Proc {
    fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `/readyz` answers 200.
    async fn wait_ready(&self) {
        self.wait_readyz(200, "ok").await;
    }

    /// Waits until `/readyz` answers `status` with a body holding `text`.
    async fn wait_readyz(&self, status: u16, text: &str) -> String {
        let url = format!("{}/readyz", self.base);
        poll(&format!("/readyz answers {status} {text:?}"), || async {
            match get(&url).await? {
                (s, body) if s == status && body.contains(text) => Ok(body),
                other => {
                    let log = self.log();
                    let tail = &log[log.len().saturating_sub(10)..];
                    Err(format!("{other:?}; its log ends with {tail:#?}"))
                }
            }
        })
        .await
    }

    /// `/metrics`, checked line by line as Prometheus text, then parsed.
    async fn scrape(&self) -> Result<Scrape, String> {
        let (status, text) = get(&format!("{}/metrics", self.base)).await?;
        assert_eq!(status, 200, "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            match LineInfo::parse(line) {
                LineInfo::Sample { value, .. } if value.parse::<f64>().is_ok() => {}
                _ => panic!("not a Prometheus sample: {line:?} in\n{text}"),
            }
        }
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        Ok(Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap())
    }

    /// The value of an unlabelled series.
    async fn metric(&self, name: &str) -> Result<f64, String> {
        let scrape = self.scrape().await?;
        value(&scrape, name, &[]).ok_or_else(|| format!("no {name}"))
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends SIGTERM, as the kubelet stops a pod, and waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the series `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// A replica with leader election on: Lease `appattach-controller` in `lease_ns`, held for
/// 6 s without renewal.
fn replica(env: &Env, identity: &str, kubeconfig: &Path, lease_ns: &str) -> Proc {
    let mut args = env.controller_args();
    args.extend(
        [
            "--leader-elect",
            "--leader-election-namespace",
            lease_ns,
            "--leader-election-identity",
            identity,
            "--leader-election-duration",
            "6",
        ]
        .map(String::from),
    );
    launch(kubeconfig, &args, &[("RUST_LOG", "info")])
}

/// A kubeconfig in `dir` naming an API server nobody listens for (port 9, discard).
fn unreachable_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    path
}

/// The admin kubeconfig with `edit` applied, written to `dir`.
fn derived_kubeconfig(env: &Env, dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let text = std::fs::read_to_string(env.ns.cp.kubeconfig()).unwrap();
    let mut config: Value = serde_yaml_ng::from_str(&text).unwrap();
    edit(&mut config);
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
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

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), ns);
    leases
        .get_opt("appattach-controller")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn wait_holder(env: &Env, identity: &str) {
    wait_holder_in(env, &env.ns.name, identity).await;
}

async fn wait_holder_in(env: &Env, ns: &str, identity: &str) {
    poll(&format!("{identity} holds the Lease"), || async {
        match holder(&env.ns.client, ns).await {
            Some(h) if h == identity => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The replicas (by the name in their `User-Agent`) the emulator answered, in order.
async fn callers(env: &Env) -> Vec<String> {
    let (_, log) = env.get("/_emulator/requests/log").await;
    log["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let agent = r["userAgent"].as_str().unwrap_or("(none)");
            agent
                .rsplit_once('(')
                .map_or(agent, |(_, who)| who.trim_end_matches(')'))
                .to_string()
        })
        .collect()
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
        let p = launch(&config, &env.controller_args(), &[]);
        let live = format!("{}/livez", p.base);
        poll("the controller is alive", || async {
            match get(&live).await? {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        if reachable {
            p.wait_ready().await;
            assert_eq!(p.metric("appattach_synced").await.unwrap(), 1.0);
        } else {
            p.wait_readyz(503, "cannot reach the API server").await;
            assert_eq!(p.metric("appattach_synced").await.unwrap(), 0.0);
        }
    }
}

/// Two replicas: one leads and reconciles, the other waits ready and sends the backend
/// nothing. SIGTERM releases the Lease at once (it no longer names the old leader when the
/// process is gone) and the other leads and finishes the work; a replica killed with
/// SIGKILL is replaced after the Lease expires. The emulator's log, which names each
/// caller by its `User-Agent`, shows one writer at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_hands_over_on_sigterm_and_on_death() {
    let mut env = Env::new("leader", Duration::from_secs(300)).await;
    env.stop_controller().await;
    env.reset_counts().await;
    let kubeconfig = env.ns.cp.kubeconfig().to_path_buf();
    let mut a = replica(&env, "replica-a", &kubeconfig, &env.ns.name);
    wait_holder(&env, "replica-a").await;
    let mut b = replica(&env, "replica-b", &kubeconfig, &env.ns.name);
    b.wait_ready().await;
    a.wait_ready().await;
    assert_eq!(a.metric("appattach_leader").await.unwrap(), 1.0);
    assert_eq!(b.metric("appattach_leader").await.unwrap(), 0.0);
    env.apply_assigned("one", &[("hp-a", 0)]).await;
    env.wait_package("one", 1, 1).await;
    let seen = callers(&env).await;
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|c| c == "replica-a"),
        "only the leader calls the backend: {seen:?}"
    );

    // SIGTERM: a exits cleanly and its Lease is released, not left to expire.
    let exit = a.terminate();
    assert!(exit.success(), "SIGTERM exits 0: {exit}");
    assert_ne!(
        holder(&env.ns.client, &env.ns.name).await.as_deref(),
        Some("replica-a"),
        "the Lease still names the replica that shut down"
    );
    assert!(
        a.log().iter().any(|l| l.contains("released the Lease")),
        "{:?}",
        a.log()
    );
    wait_holder(&env, "replica-b").await;
    poll("b says it leads", || async {
        match b.metric("appattach_leader").await? {
            1.0 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    env.apply_assigned("two", &[("hp-a", 0)]).await;
    env.wait_package("two", 1, 1).await;

    // SIGKILL: nothing is released; the waiting replica takes over once the Lease expires.
    let c = replica(&env, "replica-c", &kubeconfig, &env.ns.name);
    c.wait_ready().await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    wait_holder(&env, "replica-c").await;
    env.apply_assigned("three", &[("hp-a", 0)]).await;
    env.wait_package("three", 1, 1).await;

    // One writer at a time: each replica's requests come in one run, a's before b's
    // before c's.
    let mut runs = callers(&env).await;
    runs.dedup();
    assert_eq!(runs, ["replica-a", "replica-b", "replica-c"]);
}

/// Forwards TCP connections to `target` until told to cut: then drops every connection
/// and refuses new ones, as a network partition between one replica and the API server.
async fn partition_proxy(target: String) -> (u16, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if *cut_rx.borrow() {
                continue;
            }
            let mut cut = cut_rx.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.wait_for(|c| *c) => {}
                }
            });
        }
    });
    (port, cut_tx)
}

/// The leader loses its way to the API server (it still reaches the backend). It cannot
/// renew the Lease, so another replica may take it once the Lease expires: the leader must
/// have stopped, and exited, before then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_before_another_can_lead() {
    let mut env = Env::new("partition", Duration::from_secs(300)).await;
    env.stop_controller().await;
    env.reset_counts().await;
    let server = env.ns.cp.server_url().to_string();
    let target = server.trim_start_matches("https://").to_string();
    let (port, cut) = partition_proxy(target).await;
    let dir = tempfile::tempdir().unwrap();
    let through_proxy = derived_kubeconfig(&env, dir.path(), |c| {
        c["clusters"][0]["cluster"]["server"] = format!("https://127.0.0.1:{port}").into();
    });
    let mut a = replica(&env, "replica-a", &through_proxy, &env.ns.name);
    wait_holder(&env, "replica-a").await;
    let b = replica(&env, "replica-b", env.ns.cp.kubeconfig(), &env.ns.name);
    b.wait_ready().await;
    env.apply_assigned("before", &[("hp-a", 0)]).await;
    env.wait_package("before", 1, 1).await;

    cut.send(true).unwrap();
    // The first moment b holds the Lease, a must be gone already.
    wait_holder(&env, "replica-b").await;
    let exit = a
        .exited()
        .unwrap_or_else(|| panic!("replica-a still runs while replica-b leads: {:?}", a.log()));
    assert!(!exit.success(), "{exit}");
    let log = a.log();
    assert!(
        log.iter().any(|l| l.contains("stepping down")),
        "the exit says why: {log:?}"
    );
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");

    env.apply_assigned("after", &[("hp-a", 0)]).await;
    env.wait_package("after", 1, 1).await;
    let mut runs = callers(&env).await;
    runs.dedup();
    assert_eq!(runs, ["replica-a", "replica-b"], "one writer at a time");
}

/// The controller with exactly the rights deploy/ gives it: a token of the
/// appattach-controller service account (TokenRequest API), the RBAC of
/// deploy/base/rbac.yaml. The whole flow works (the Lease, status, finalizers, events, the
/// backend, deletion) without a single refusal, and anything beyond its role is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_of_deploy_runs_the_whole_flow() {
    let mut env = Env::new("service_account", Duration::from_secs(300)).await;
    env.stop_controller().await;
    let cp = env.ns.cp;
    for file in ["namespace.yaml", "service-account.yaml", "rbac.yaml"] {
        let path = repo_path(&format!("deploy/base/{file}"));
        cp.kubectl_output(&[
            "apply",
            "--server-side",
            "--field-manager=deploy-test",
            "-f",
            path.to_str().unwrap(),
        ])
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let token = cp
        .kubectl_output(&[
            "create",
            "token",
            "appattach-controller",
            "-n",
            "appattach-system",
            "--duration=1h",
        ])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let as_controller = derived_kubeconfig(&env, dir.path(), |c| {
        c["users"][0]["user"] = serde_json::json!({ "token": token.trim() });
    });
    let kubectl_as = |args: &[&str]| {
        Command::new(cp.binaries().kubectl())
            .arg("--kubeconfig")
            .arg(&as_controller)
            .args(args)
            .output()
            .unwrap()
    };
    let whoami = kubectl_as(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:serviceaccount:appattach-system:appattach-controller",
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    let secrets = kubectl_as(&["get", "secrets", "-n", &env.ns.name]);
    assert!(!secrets.status.success());
    assert!(
        String::from_utf8_lossy(&secrets.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&secrets.stderr)
    );

    let p = replica(&env, "sa-replica", &as_controller, "appattach-system");
    wait_holder_in(&env, "appattach-system", "sa-replica").await;
    p.wait_ready().await;
    env.apply_assigned("app", &[("hp-a", 0), ("hp-b", 1)]).await;
    env.wait_package("app", 2, 1).await;
    assert_eq!(
        env.roles("app").await.len(),
        1,
        "a role assignment per principal"
    );
    env.eventually("an event about the package", || async {
        !env.events("app").await.is_empty()
    })
    .await;
    // The metrics follow the work: resources by kind and Ready, backend requests by
    // operation and status, passes by kind and result.
    let before = poll("the metrics count the Ready objects", || async {
        let m = p.scrape().await?;
        let ready = |kind| {
            value(
                &m,
                "appattach_resources",
                &[("kind", kind), ("ready", "True")],
            )
        };
        if ready("AppAttachPackage") == Some(1.0) && ready("HostPoolAssignment") == Some(1.0) {
            Ok(m)
        } else {
            Err(format!(
                "{:?}",
                m.samples
                    .iter()
                    .filter(|x| x.metric == "appattach_resources")
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
    let created = ["200", "201"].iter().any(|status| {
        value(
            &before,
            "appattach_arm_requests_total",
            &[
                ("method", "PUT"),
                ("operation", "appAttachPackages"),
                ("status", status),
            ],
        )
        .is_some_and(|n| n >= 1.0)
    });
    assert!(created, "{:#?}", before.samples);
    let passes = |m: &Scrape| {
        value(
            m,
            "appattach_reconciles_total",
            &[("kind", "AppAttachPackage"), ("result", "success")],
        )
        .unwrap_or(0.0)
    };
    assert!(passes(&before) >= 1.0);
    for (kind, name) in [
        ("UserAssignment", "app-users"),
        ("HostPoolAssignment", "app-pools"),
        ("AppAttachPackage", "app"),
    ] {
        env.delete(kind, name).await;
    }
    env.eventually("the package and its backend resources are gone", || async {
        !env.exists("AppAttachPackage", "app").await
            && env.get(&env.package_path("app")).await.0 == 404
    })
    .await;
    let after = p.scrape().await.unwrap();
    assert!(
        passes(&after) > passes(&before),
        "the deletion's passes were counted"
    );
    assert_eq!(
        value(
            &after,
            "appattach_resources",
            &[("kind", "AppAttachPackage")]
        ),
        None,
        "no package is left to count"
    );
    assert!(
        value(
            &after,
            "appattach_arm_requests_total",
            &[("method", "DELETE"), ("operation", "appAttachPackages")]
        )
        .is_some_and(|n| n >= 1.0),
        "{:#?}",
        after.samples
    );
    let refused: Vec<String> = p
        .log()
        .into_iter()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:#?}");
}

/// Against an API server without the CRDs, the controller stays alive and not ready,
/// says on /readyz and in its log what is missing and the command that installs it, and
/// becomes ready on its own once they are installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crds_it_stays_unready_and_says_how_to_install_them() {
    let binaries = appattach_operator::controlplane::Binaries::locate().unwrap();
    let bare = appattach_operator::controlplane::ControlPlane::start(&binaries)
        .await
        .unwrap();
    // A backend that answers: readiness also waits for the first picture of it.
    let backend =
        appattach_operator::emulator::Emulator::start(appattach_operator::emulator::Config {
            world: Some(
                serde_yaml_ng::from_str(&format!("subscription: {SUB}\nresourceGroup: {RG}\n"))
                    .unwrap(),
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    let args = ["--arm-endpoint", &backend.url(), "--subscription", SUB]
        .into_iter()
        .chain(["--resource-group", RG])
        .map(String::from)
        .collect::<Vec<_>>();
    let mut p = launch(
        bare.kubeconfig(),
        &args,
        &[("RUST_LOG", "info,kube_runtime=debug")],
    );
    let body = p.wait_readyz(503, "CRDs are not installed").await;
    assert!(
        body.contains(appattach_operator::resources::INSTALL_CRDS),
        "{body}"
    );
    poll("the log says it", || async {
        let said = p
            .log()
            .into_iter()
            .filter(|l| l.contains("CRDs are not installed"))
            .count();
        if said >= 1 {
            Ok(said)
        } else {
            Err(format!("{:?}", p.log()))
        }
    })
    .await;
    assert!(p.exited().is_none(), "it keeps running: {:?}", p.log());

    let crds = std::fs::read_to_string(repo_path("crds/appattach.io.yaml")).unwrap();
    bare.install_crds(&crds).unwrap();
    p.wait_ready().await;
    let log = p.log();
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");
}

/// `--log-format json`: every line is one JSON object with its level and message, and a
/// line about an object carries its kind, namespace and name as fields of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_object_of_each_line() {
    let mut env = Env::new("json_logs", Duration::from_secs(300)).await;
    env.stop_controller().await;
    let mut args = env.controller_args();
    args.extend(["--log-format", "json"].map(String::from));
    let p = launch(
        env.ns.cp.kubeconfig(),
        &args,
        &[("RUST_LOG", "info,appattach_operator=debug")],
    );
    env.apply_assigned("logged", &[("hp-a", 0)]).await;
    env.wait_package("logged", 1, 1).await;
    let ns = env.ns.name.clone();
    let lines = poll("a line says the package was reconciled", || async {
        let lines = p.log();
        let found = lines.iter().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|e| {
                e["message"] == "reconciled"
                    && e["kind"] == "AppAttachPackage"
                    && e["name"] == "logged"
                    && e["namespace"] == *ns
            })
        });
        if found {
            Ok(lines)
        } else {
            Err(lines.join("\n"))
        }
    })
    .await;
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["level"].is_string(), "{line}");
        assert!(entry["message"].is_string(), "{line}");
        if entry.get("name").is_some() {
            for field in ["kind", "namespace"] {
                assert!(entry[field].is_string(), "{field} missing: {line}");
            }
        }
    }
}

/// A flag with a bad value stops the start at once: exit status 2, and a first line that
/// names the flag and the value, never a panic.
#[test]
fn a_bad_flag_value_is_one_line_naming_the_flag() {
    for (args, names) in [
        (&["--resync", "soon"][..], &["--resync", "soon"][..]),
        (
            &["--leader-election-duration", "2"],
            &["--leader-election-duration", "2"],
        ),
        (&["--arm-read-limit", "fast"], &["--arm-read-limit", "fast"]),
        (
            &["--metrics-bind-address", "everywhere"],
            &["--metrics-bind-address", "everywhere"],
        ),
        (&["--concurrency", "lots"], &["--concurrency", "lots"]),
    ] {
        let out = Command::new(BIN)
            .arg("controller")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error:"), "{args:?}: {stderr}");
        for n in names {
            assert!(first.contains(n), "{args:?}: {n} not in {first:?}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// SIGTERM in the middle of a pass: the pass finishes when it can within
/// `--shutdown-timeout` (its backend write lands), and is abandoned when it cannot (the
/// process still exits 0 within about the timeout, saying so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_pass_in_flight_finish_within_the_timeout() {
    let mut env = Env::new("drain", Duration::from_secs(300)).await;
    env.stop_controller().await;
    for (name, delay_ms, timeout, lands) in [
        ("finishes", 1500, "30s", true),
        ("abandoned", 20_000, "1s", false),
    ] {
        env.reset_counts().await;
        env.arm(
            reqwest::Method::POST,
            "/_emulator/faults",
            Some(serde_json::json!({"method": "PUT", "delayMs": delay_ms, "count": 1})),
        )
        .await;
        let mut args = env.controller_args();
        args.extend(["--shutdown-timeout", timeout].map(String::from));
        let mut p = launch(env.ns.cp.kubeconfig(), &args, &[("RUST_LOG", "info")]);
        env.ns.apply(&package(name)).await.unwrap();
        env.eventually("the backend write is under way", || async {
            env.counts().await["byMethod"]["PUT"].as_u64().unwrap_or(0) >= 1
        })
        .await;
        let exit = p.terminate();
        assert!(exit.success(), "{exit}: {:?}", p.log());
        let log = p.log();
        assert!(
            log.iter()
                .any(|l| l.contains("waiting for those in flight")),
            "{log:?}"
        );
        let applied = env.counts().await["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| {
                c["method"] == "PUT" && c["path"].as_str().unwrap().contains("/appattachpackages/")
            });
        assert_eq!(applied, lands, "{name}: {log:?}");
        assert_eq!(
            log.iter().any(|l| l.contains("abandoned")),
            !lands,
            "{name}: {log:?}"
        );
    }
}
