//! `appattach bench`: the operator at the size of a real estate, against the local control
//! plane and the emulator, measured. Not part of `cargo test`; BENCHMARKS.md holds its
//! figures and the commands that give them.
//!
//! One run: start etcd and kube-apiserver, install the CRDs, start the emulator with a
//! generated world, create the packages and assignments, then start the controller (this
//! binary, as its own process, so its CPU and memory are its own) and measure:
//! - cold start: controller start to every object Ready, and the floor for the same writes
//!   (the same status writes to the API server and backend objects to a fresh emulator, by a
//!   client without logic, with the same concurrency);
//! - backend requests per package by method, and status writes per object;
//! - steady state over several resyncs: backend writes, status writes, CPU seconds;
//! - change latency: one assignment changed, to the backend write, p50 and p99;
//! - the controller's peak and steady RSS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::controlplane::{Binaries, ControlPlane};
use crate::emulator::faults::CountsView;
use crate::emulator::{self, Emulator, World};

/// Arguments of `appattach bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// tiny (20 packages: the CI smoke run), small (1,000 packages, 3,000 assignments, 50
    /// host pools, 500 session hosts, 5,000 users) or large (10,000 packages, 30,000
    /// assignments, 500 host pools, 5,000 session hosts, 50,000 users).
    #[arg(long, value_enum, default_value = "small")]
    pub scale: Scale,

    /// Run small at 1×, 2×, 4× and 10× (or the factors given, comma-separated) and print
    /// how each figure grows.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_missing_value = "1,2,4,10")]
    pub scaling: Option<Vec<u32>>,

    /// Print the results as JSON rather than tables.
    #[arg(long)]
    pub json: bool,

    /// Assignment changes timed for the change latency.
    #[arg(long, default_value_t = 100)]
    pub changes: usize,

    /// The controller's resync period during the run.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub resync: Duration,

    /// Resync periods watched for the steady state.
    #[arg(long, default_value_t = 2)]
    pub resyncs: u32,

    /// Packages the controller reconciles at once (and the floor's writers).
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,

    /// Directory of prebuilt etcd, kube-apiserver and kubectl (built when absent).
    #[arg(long, env = "APPATTACH_CONTROLPLANE_BIN")]
    pub control_plane_bin: Option<std::path::PathBuf>,
}

/// A named size.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// 20 packages.
    Tiny,
    /// 1,000 packages.
    Small,
    /// 10,000 packages.
    Large,
}

/// How many of each thing a run has.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Size {
    /// AppAttachPackages (each with one HostPoolAssignment and two UserAssignments).
    pub packages: usize,
    /// Host pools.
    pub host_pools: usize,
    /// Session hosts, spread over the host pools.
    pub session_hosts: usize,
    /// Users of the directory, spread over the groups.
    pub users: usize,
    /// Groups of the directory.
    pub groups: usize,
}

impl Size {
    /// The size of a named scale.
    pub fn of(scale: Scale) -> Self {
        match scale {
            Scale::Tiny => Self {
                packages: 20,
                host_pools: 5,
                session_hosts: 10,
                users: 100,
                groups: 10,
            },
            Scale::Small => Self {
                packages: 1_000,
                host_pools: 50,
                session_hosts: 500,
                users: 5_000,
                groups: 100,
            },
            Scale::Large => Self {
                packages: 10_000,
                host_pools: 500,
                session_hosts: 5_000,
                users: 50_000,
                groups: 1_000,
            },
        }
    }

    /// This size times `k`.
    pub fn times(self, k: u32) -> Self {
        let k = k as usize;
        Self {
            packages: self.packages * k,
            host_pools: self.host_pools * k,
            session_hosts: self.session_hosts * k,
            users: self.users * k,
            groups: self.groups * k,
        }
    }

    /// Objects in the cluster: a package and its three assignments.
    pub fn objects(&self) -> usize {
        self.packages * 4
    }

    /// A rough bound on the memory a run needs (API server, etcd, emulator, controller and
    /// this process), from the measured small run with a wide margin.
    pub fn memory_needed(&self) -> u64 {
        const BASE: u64 = 1 << 30;
        BASE + self.objects() as u64 * 160 * 1024 + self.users as u64 * 4 * 1024
    }
}

/// The world of a size: `westeurope` host pools with Windows 11 session hosts, a Desktop
/// application group each whose members are every group, and a directory of users spread
/// over the groups.
pub fn world(size: &Size) -> World {
    let pools: Vec<Value> = (0..size.host_pools)
        .map(|p| {
            let hosts: Vec<Value> = (0..size.session_hosts)
                .filter(|h| h % size.host_pools == p)
                .map(|h| json!({"name": format!("sh-{h}"), "os": "Windows11"}))
                .collect();
            json!({"name": format!("hp-{p}"), "location": "westeurope",
                   "identityProvider": "EntraID", "sessionHosts": hosts})
        })
        .collect();
    let groups: Vec<String> = (0..size.groups).map(|g| format!("group-{g}")).collect();
    // Each application group admits the ten groups around 2p: the groups of the packages
    // on its pool and of the changes the bench makes (see `manifests`). Every group on
    // every pool would be H x G role assignments (500,000 at large), which no estate has.
    let app_groups: Vec<Value> = (0..size.host_pools)
        .map(|p| {
            let members: Vec<&String> = (0..10)
                .map(|k| &groups[(2 * p + size.groups * 2 + k - 2) % size.groups])
                .collect();
            json!({"name": format!("ag-{p}"), "hostPool": format!("hp-{p}"),
                   "type": "Desktop", "members": members})
        })
        .collect();
    let users: Vec<Value> = (0..size.users)
        .map(|u| {
            json!({"upn": format!("user{u}@contoso.com"), "objectId": uuid(1, u),
                         "groups": [format!("group-{}", u % size.groups)]})
        })
        .collect();
    let directory_groups: Vec<Value> = (0..size.groups)
        .map(|g| json!({"name": format!("group-{g}"), "objectId": uuid(2, g)}))
        .collect();
    serde_json::from_value(json!({
        "subscription": "00000000-0000-0000-0000-000000000000",
        "resourceGroup": "rg-bench",
        "hostPools": pools,
        "applicationGroups": app_groups,
        "directory": {"users": users, "groups": directory_groups},
    }))
    .expect("the generated world reads as a World")
}

/// A stable object id: `kind` and `n` in a UUID's shape.
fn uuid(kind: u32, n: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

/// The namespaces objects spread over: one per thousand packages.
fn namespaces(size: &Size) -> Vec<String> {
    (0..size.packages.div_ceil(1000).max(1))
        .map(|i| format!("bench-{i}"))
        .collect()
}

/// The four objects of package `i`: the package, its host pools (two, rings 0 and 1), and
/// two groups.
pub fn manifests(size: &Size, i: usize) -> [Value; 4] {
    let name = format!("app-{i}");
    let pool = |k: usize| format!("hp-{}", (i + k) % size.host_pools);
    let group = |k: usize| (i * 2 + k) % size.groups;
    let users = |k: usize| {
        json!({"apiVersion": "appattach.io/v1alpha1", "kind": "UserAssignment",
               "metadata": {"name": format!("{name}-users-{k}")},
               "spec": {"packageRef": {"name": name}, "principals": [
                   {"kind": "Group", "name": format!("group-{}", group(k)), "objectId": uuid(2, group(k))}]}})
    };
    [
        json!({"apiVersion": "appattach.io/v1alpha1", "kind": "AppAttachPackage",
               "metadata": {"name": name},
               "spec": {"location": "westeurope",
                        "image": {"path": format!(r"\\fs.contoso.com\apps\{name}_1.0.0.0.vhdx")},
                        "package": {"type": "Msix", "name": format!("Contoso.App{i}"),
                                    "publisher": "CN=Contoso", "version": "1.0.0.0",
                                    "applications": [{"id": "App", "displayName": format!("App {i}")}]},
                        "certificate": {"subject": "CN=Contoso", "expiry": "2030-01-01T00:00:00Z",
                                        "timestamped": true}}}),
        json!({"apiVersion": "appattach.io/v1alpha1", "kind": "HostPoolAssignment",
               "metadata": {"name": format!("{name}-pools")},
               "spec": {"packageRef": {"name": name},
                        "hostPools": [{"name": pool(0), "ring": 0}, {"name": pool(1), "ring": 1}]}}),
        users(0),
        users(1),
    ]
}

/// The figures of one run.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// What was run.
    pub size: Size,
    /// Creating the objects (before the controller starts), seconds.
    pub create_seconds: f64,
    /// Controller start to every object Ready, seconds.
    pub cold_start_seconds: f64,
    /// The same writes by a client without logic, seconds.
    pub floor_seconds: f64,
    /// Cold start over floor.
    pub cold_over_floor: f64,
    /// Backend requests per package on cold start, by method.
    pub requests_per_package: BTreeMap<String, f64>,
    /// Status writes to the API server per object on cold start.
    pub status_writes_per_object: f64,
    /// Backend writes during the steady state.
    pub steady_backend_writes: u64,
    /// Status writes during the steady state.
    pub steady_status_writes: u64,
    /// Backend reads a second during the steady state.
    pub steady_backend_reads_per_second: f64,
    /// How long the steady state was watched, seconds.
    pub steady_seconds: f64,
    /// Controller CPU seconds during the steady state.
    pub steady_cpu_seconds: f64,
    /// Controller CPU seconds for the cold start.
    pub cold_cpu_seconds: f64,
    /// Assignment change to its backend write: median, ms.
    pub change_p50_ms: f64,
    /// Assignment change to its backend write: 99th percentile, ms.
    pub change_p99_ms: f64,
    /// Backend writes per change.
    pub writes_per_change: f64,
    /// Changes timed.
    pub changes: usize,
    /// The controller's peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// The controller's RSS after the steady state, MiB.
    pub steady_rss_mib: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binaries = match &args.control_plane_bin {
        Some(dir) => Binaries::from_dir(dir.clone())?,
        None => {
            eprintln!("bench: building (or reusing) the control-plane binaries...");
            Binaries::build()?
        }
    };
    let factors = args.scaling.clone();
    let sizes: Vec<Size> = match &factors {
        Some(f) if !f.is_empty() => f.iter().map(|k| Size::of(Scale::Small).times(*k)).collect(),
        _ => vec![Size::of(args.scale)],
    };
    let mut all = Vec::new();
    for size in sizes {
        let figures = tokio::select! {
            f = one_run(&args, &binaries, size) => f?,
            () = super::controller::shutdown_signal() => bail!("interrupted: the control plane, emulator and controller were stopped"),
        };
        if !args.json {
            println!("{}", table(&[&figures]));
        }
        all.push(figures);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.len() > 1 {
        println!(
            "Scaling (each figure relative to the first run, per package where it is a total):"
        );
        println!("{}", table(&all.iter().collect::<Vec<_>>()));
    }
    Ok(())
}

/// The controller process, stopped when dropped (so an error leaves nothing behind): SIGTERM
/// first, as Kubernetes stops a pod (a profiler wrapping it then writes its data), SIGKILL
/// when it has not exited within 15 s.
struct ControllerProcess(std::process::Child);

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // Our own child, not reaped until `wait`: the pid cannot be someone else's.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ControllerProcess {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.0.try_wait()? {
            bail!("the controller exited ({status}) in the middle of the run");
        }
        Ok(())
    }
}

async fn one_run(args: &Args, binaries: &Binaries, size: Size) -> anyhow::Result<Figures> {
    let available = mem_available()?;
    if size.memory_needed() > available {
        bail!(
            "{} packages need about {} MiB and this machine has {} MiB available: choose a smaller --scale or --scaling factor",
            size.packages,
            size.memory_needed() >> 20,
            available >> 20
        );
    }
    eprintln!(
        "bench: {} packages, {} assignments, {} host pools, {} session hosts, {} users",
        size.packages,
        size.packages * 3,
        size.host_pools,
        size.session_hosts,
        size.users
    );
    let cp = ControlPlane::start(binaries).await?;
    cp.install_crds(&crate::resources::crds_yaml()?)?;
    let client = cp.client().await?;
    let world = world(&size);
    let started = Instant::now();
    let emulator = Emulator::start(emulator::Config {
        world: Some(world.clone()),
        ..Default::default()
    })
    .await?;
    eprintln!(
        "bench: control plane and emulator up ({:.1}s to load the world)",
        started.elapsed().as_secs_f64()
    );

    let created = Instant::now();
    create_objects(&client, &size, "").await?;
    let create_seconds = created.elapsed().as_secs_f64();
    eprintln!(
        "bench: {} objects created in {create_seconds:.1}s",
        size.objects()
    );

    // The controller, as its own process.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let status_before = status_writes(&cp)?;
    let cold = Instant::now();
    // The production resync (30 minutes) for the cold start and the changes: a resync
    // shorter than the cold start would add passes to it and to the changes' queue.
    let spawn = |resync: Duration| -> anyhow::Result<ControllerProcess> {
        // APPATTACH_BENCH_WRAP runs the controller under a profiler, for example
        // `heaptrack -o /tmp/controller` (its RSS and CPU figures then measure the profiler).
        let wrap = std::env::var("APPATTACH_BENCH_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut command = match wrap.next() {
            Some(program) => {
                let mut c = std::process::Command::new(program);
                c.args(wrap).arg(std::env::current_exe()?);
                c
            }
            None => std::process::Command::new(std::env::current_exe()?),
        };
        Ok(ControllerProcess(
            command
                .args(["controller", "--arm-endpoint", &emulator.url()])
                .args(["--subscription", &world.subscription])
                .args(["--resource-group", &world.resource_group])
                .args(["--resync", &humantime::format_duration(resync).to_string()])
                .args(["--concurrency", &args.concurrency.to_string()])
                .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
                .env("KUBECONFIG", cp.kubeconfig())
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("starting the controller")?,
        ))
    };
    let mut controller = spawn(Duration::from_secs(1800))?;
    let http = reqwest::Client::new();
    let total = size.objects() as f64;
    let mut last_print = Instant::now();
    loop {
        controller.check_alive()?;
        let ready = ready_objects(&http, &metrics).await.unwrap_or(0.0);
        if ready >= total {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            check_control_plane(&cp)?;
            eprintln!(
                "bench: {ready}/{total} objects Ready after {:.0}s",
                cold.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if cold.elapsed() > Duration::from_secs(3600) {
            bail!("not every object was Ready within an hour ({ready}/{total})");
        }
        // Each scrape counts every cached object: often enough for a figure in seconds,
        // rarely enough not to weigh on the controller being measured.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cold_start_seconds = cold.elapsed().as_secs_f64();
    let cold_cpu_seconds = cpu_seconds(controller.pid())?;
    eprintln!("bench: cold start {cold_start_seconds:.1}s");
    let counts = emulator_counts(&http, &emulator.url()).await?;
    let requests_per_package = counts
        .by_method
        .iter()
        .map(|(m, n)| (m.clone(), *n as f64 / size.packages as f64))
        .collect();
    let status_cold = status_writes(&cp)? - status_before;
    let status_writes_per_object = status_cold as f64 / total;

    // Change latency: one UserAssignment at a time gets a second group; timed until the
    // backend has its role assignment.
    reset_counts(&http, &emulator.url()).await?;
    let changes = args.changes.min(size.packages);
    let mut latencies = Vec::with_capacity(changes);
    let spread = (size.packages / changes.max(1)).max(1);
    for c in 0..changes {
        controller.check_alive()?;
        let i = c * spread;
        let ns = &namespaces(&size)[i / 1000];
        let group = (i * 2 + 7) % size.groups;
        let object_id = uuid(2, group);
        let api = api(&client, ns, "UserAssignment");
        let patch = json!({"spec": {"principals": [
            manifests(&size, i)[2]["spec"]["principals"][0].clone(),
            {"kind": "Group", "name": format!("group-{group}"), "objectId": object_id}]}});
        let scope = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DesktopVirtualization/appAttachPackages/{}",
            world.subscription,
            world.resource_group,
            crate::domain::naming::backend_name(ns, &format!("app-{i}"))
        );
        let t = Instant::now();
        api.patch(
            &format!("app-{i}-users-0"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        loop {
            if role_assigned(&http, &emulator.url(), &scope, &object_id).await? {
                break;
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!("change {c} (app-{i}) did not reach the backend within 2 minutes");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let counts = emulator_counts(&http, &emulator.url()).await?;
    let writes_per_change = counts.writes as f64 / changes.max(1) as f64;
    latencies.sort_by(f64::total_cmp);
    let (peak, _) = rss(controller.pid())?;
    drop(controller);

    // Steady state: resyncs only.
    // A controller with the bench's resync: its first passes and then --resyncs resyncs,
    // none of which should write.
    let mut controller = spawn(args.resync)?;
    reset_counts(&http, &emulator.url()).await?;
    let status_before = status_writes(&cp)?;
    let cpu_before = cpu_seconds(controller.pid())?;
    let steady = Instant::now();
    let watch = args.resync * args.resyncs + Duration::from_secs(5);
    eprintln!("bench: steady state for {}s", watch.as_secs());
    while steady.elapsed() < watch {
        controller.check_alive()?;
        check_control_plane(&cp)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let steady_seconds = steady.elapsed().as_secs_f64();
    let counts = emulator_counts(&http, &emulator.url()).await?;
    let steady_backend_writes = counts.writes;
    let steady_backend_reads_per_second =
        counts.by_method.get("GET").copied().unwrap_or(0) as f64 / steady_seconds;
    let steady_status_writes = status_writes(&cp)? - status_before;
    let steady_cpu_seconds = cpu_seconds(controller.pid())? - cpu_before;
    let (_, steady_rss) = rss(controller.pid())?;

    drop(controller);

    // The floor: the same writes, by a client without logic, in the same run.
    eprintln!("bench: the floor (the same writes without logic)");
    let floor_seconds = floor(
        &client,
        &http,
        &emulator,
        &world,
        &size,
        args.concurrency,
        status_writes_per_object,
    )
    .await?;
    emulator.shutdown().await;
    drop(cp);
    Ok(Figures {
        size,
        create_seconds,
        cold_start_seconds,
        floor_seconds,
        cold_over_floor: cold_start_seconds / floor_seconds,
        requests_per_package,
        status_writes_per_object,
        steady_backend_writes,
        steady_status_writes,
        steady_backend_reads_per_second,
        steady_seconds,
        steady_cpu_seconds,
        cold_cpu_seconds,
        change_p50_ms: percentile(&latencies, 0.50),
        change_p99_ms: percentile(&latencies, 0.99),
        writes_per_change,
        changes,
        peak_rss_mib: peak as f64 / 1048576.0,
        steady_rss_mib: steady_rss as f64 / 1048576.0,
    })
}

/// Fails, saying so, when the API server no longer answers.
fn check_control_plane(cp: &ControlPlane) -> anyhow::Result<()> {
    cp.kubectl_output(&["get", "--raw", "/readyz", "--request-timeout=10s"])
        .map(drop)
        .context("the control plane stopped answering in the middle of the run")
}

/// Creates the namespaces and every object (with `suffix` on the namespace names), 16 at
/// a time.
async fn create_objects(client: &kube::Client, size: &Size, suffix: &str) -> anyhow::Result<()> {
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in namespaces(size) {
        let ns = format!("{ns}{suffix}");
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    }
    futures::stream::iter(0..size.packages)
        .map(|i| {
            let client = client.clone();
            let ns = format!("{}{suffix}", namespaces(size)[i / 1000]);
            async move {
                for m in manifests(size, i) {
                    let kind = m["kind"].as_str().unwrap_or_default().to_string();
                    let obj: DynamicObject = serde_json::from_value(m)?;
                    api(&client, &ns, &kind)
                        .create(&PostParams::default(), &obj)
                        .await
                        .with_context(|| {
                            format!(
                                "creating {kind} {}",
                                obj.metadata.name.clone().unwrap_or_default()
                            )
                        })?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &crate::resources::api_resource(kind))
}

/// The floor for the cold start's writes: the backend objects the controller made (the
/// packages and role assignments, read back from the emulator) PUT to a fresh emulator,
/// and as many status writes as the controller made, on copies of the objects in other
/// namespaces, by `concurrency` writers without any logic.
async fn floor(
    client: &kube::Client,
    http: &reqwest::Client,
    emulator: &emulator::Served,
    world: &World,
    size: &Size,
    concurrency: u16,
    status_writes_per_object: f64,
) -> anyhow::Result<f64> {
    let base = emulator.url();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/{}",
        world.subscription, world.resource_group
    );
    let dv = crate::arm::DESKTOP_VIRTUALIZATION_API_VERSION;
    let ra = crate::arm::ROLE_ASSIGNMENTS_API_VERSION;
    let packages = list_all(
        http,
        &format!("{base}{rg}/providers/Microsoft.DesktopVirtualization/appAttachPackages?api-version={dv}"),
    )
    .await?;
    let roles = list_all(
        http,
        &format!("{base}{rg}/providers/Microsoft.Authorization/roleAssignments?api-version={ra}"),
    )
    .await?;
    // Statuses as the controller left them, and copies of the objects to write them to.
    let mut statuses = Vec::new();
    for ns in namespaces(size) {
        for kind in ["AppAttachPackage", "HostPoolAssignment", "UserAssignment"] {
            for o in api(client, &ns, kind).list(&Default::default()).await? {
                statuses.push((
                    kind,
                    format!("{ns}-floor"),
                    o.metadata.name.clone().unwrap_or_default(),
                    o.data["status"].clone(),
                ));
            }
        }
    }
    create_objects(client, size, "-floor").await?;
    let fresh = Emulator::start(emulator::Config {
        world: Some(world.clone()),
        ..Default::default()
    })
    .await?;
    let fresh_url = fresh.url();
    let writes_each = status_writes_per_object.round().max(1.0) as usize;
    let t = Instant::now();
    let backend = futures::stream::iter(packages.into_iter().chain(roles))
        .map(|o| {
            let url = format!(
                "{fresh_url}{}?api-version={}",
                o["id"].as_str().unwrap_or_default(),
                if o["type"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Authorization")
                {
                    ra
                } else {
                    dv
                }
            );
            let mut body = json!({"properties": o["properties"]});
            if let Some(location) = o.get("location") {
                body["location"] = location.clone();
            }
            async move {
                let r = http.put(&url).json(&body).send().await?;
                if !r.status().is_success() {
                    bail!(
                        "floor PUT {url}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.into())
        .try_collect::<Vec<_>>();
    let status = futures::stream::iter(statuses)
        .map(|(kind, ns, name, status)| {
            let api = api(client, &ns, kind);
            async move {
                for w in 0..writes_each {
                    let mut status = status.clone();
                    // Each write a change, as the controller's are.
                    status["observedGeneration"] = json!(w as i64 + 1);
                    api.patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.into())
        .try_collect::<Vec<_>>();
    tokio::try_join!(backend, status)?;
    let seconds = t.elapsed().as_secs_f64();
    fresh.shutdown().await;
    Ok(seconds)
}

async fn list_all(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = Some(url.to_string());
    while let Some(u) = next {
        let page: Value = http
            .get(&u)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        out.extend(page["value"].as_array().cloned().unwrap_or_default());
        next = page["nextLink"].as_str().map(String::from);
    }
    Ok(out)
}

/// Objects whose Ready is True, as the controller's `appattach_resources` counts them.
async fn ready_objects(http: &reqwest::Client, metrics: &str) -> anyhow::Result<f64> {
    let text = http.get(metrics).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("appattach_resources{") && l.contains("ready=\"True\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

/// Writes to the status of the three kinds the API server has served, from its own
/// `apiserver_request_total`.
fn status_writes(cp: &ControlPlane) -> anyhow::Result<u64> {
    let text = cp.kubectl_output(&["get", "--raw", "/metrics"])?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("group=\"appattach.io\"")
                && l.contains("subresource=\"status\"")
                && ["PATCH", "APPLY", "PUT"]
                    .iter()
                    .any(|v| l.contains(&format!("verb=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

async fn emulator_counts(http: &reqwest::Client, base: &str) -> anyhow::Result<CountsView> {
    Ok(http
        .get(format!("{base}/_emulator/requests"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn reset_counts(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    http.delete(format!("{base}/_emulator/requests"))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn role_assigned(
    http: &reqwest::Client,
    base: &str,
    scope: &str,
    object_id: &str,
) -> anyhow::Result<bool> {
    let url = format!(
        "{base}{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={}&$filter=atScope()",
        crate::arm::ROLE_ASSIGNMENTS_API_VERSION
    );
    let list: Value = http.get(url).send().await?.json().await?;
    Ok(list["value"].as_array().is_some_and(|v| {
        v.iter()
            .any(|r| r["properties"]["principalId"] == object_id)
    }))
}

/// User plus system CPU seconds of a process, from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), 1-based: utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak and current RSS of a process, bytes.
fn rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

fn mem_available() -> anyhow::Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo")?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("reading MemAvailable from /proc/meminfo")
}

/// The `q` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The figures of one or more runs as a table, a column each.
fn table(runs: &[&Figures]) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("packages / assignments".to_string())
            .chain(
                runs.iter()
                    .map(|f| format!("{} / {}", f.size.packages, f.size.packages * 3)),
            )
            .collect(),
    ];
    let mut row = |name: &str, value: &dyn Fn(&Figures) -> String| {
        rows.push(
            std::iter::once(name.to_string())
                .chain(runs.iter().map(|f| value(f)))
                .collect(),
        );
    };
    row("cold start (s)", &|f| {
        format!("{:.1}", f.cold_start_seconds)
    });
    row("floor (s)", &|f| format!("{:.1}", f.floor_seconds));
    row("cold start / floor", &|f| {
        format!("{:.2}", f.cold_over_floor)
    });
    row("cold start per package (ms)", &|f| {
        format!(
            "{:.2}",
            f.cold_start_seconds * 1000.0 / f.size.packages as f64
        )
    });
    row("cold CPU per package (ms)", &|f| {
        format!(
            "{:.2}",
            f.cold_cpu_seconds * 1000.0 / f.size.packages as f64
        )
    });
    row("backend requests per package", &|f| {
        f.requests_per_package
            .iter()
            .map(|(m, n)| format!("{m} {n:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    row("status writes per object", &|f| {
        format!("{:.2}", f.status_writes_per_object)
    });
    row("steady: backend writes", &|f| {
        f.steady_backend_writes.to_string()
    });
    row("steady: status writes", &|f| {
        f.steady_status_writes.to_string()
    });
    row("steady: backend reads/s", &|f| {
        format!("{:.1}", f.steady_backend_reads_per_second)
    });
    row("steady: CPU s over the window", &|f| {
        format!("{:.2} / {:.0}s", f.steady_cpu_seconds, f.steady_seconds)
    });
    row("change → backend p50 (ms)", &|f| {
        format!("{:.0}", f.change_p50_ms)
    });
    row("change → backend p99 (ms)", &|f| {
        format!("{:.0}", f.change_p99_ms)
    });
    row("backend writes per change", &|f| {
        format!("{:.2}", f.writes_per_change)
    });
    row("controller RSS peak (MiB)", &|f| {
        format!("{:.0}", f.peak_rss_mib)
    });
    row("controller RSS steady (MiB)", &|f| {
        format!("{:.0}", f.steady_rss_mib)
    });
    let rows: Vec<Vec<String>> = rows;
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        out.push_str("| ");
        for (c, cell) in r.iter().enumerate() {
            out.push_str(&format!("{cell:<w$} | ", w = widths[c]));
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for w in &widths {
                out.push_str(&format!("{}|", "-".repeat(w + 2)));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_world_and_its_manifests_agree() {
        let size = Size::of(Scale::Tiny);
        let world = world(&size);
        assert_eq!(world.host_pools.len(), size.host_pools);
        let hosts: usize = world.host_pools.iter().map(|p| p.session_hosts.len()).sum();
        assert_eq!(hosts, size.session_hosts);
        assert_eq!(world.directory.users.len(), size.users);
        for i in 0..size.packages {
            let [pkg, pools, users, _] = manifests(&size, i);
            assert_eq!(pools["spec"]["packageRef"]["name"], pkg["metadata"]["name"]);
            for p in pools["spec"]["hostPools"].as_array().unwrap() {
                assert!(world.host_pools.iter().any(|h| h.name == p["name"]));
            }
            let group = &users["spec"]["principals"][0];
            assert!(
                world
                    .directory
                    .groups
                    .iter()
                    .any(|g| g.name == group["name"] && g.object_id == group["objectId"])
            );
            // Each group of the package, and the one a change adds, may use each pool.
            let change = format!("group-{}", (i * 2 + 7) % size.groups);
            for p in pools["spec"]["hostPools"].as_array().unwrap() {
                let ag = world
                    .application_groups
                    .iter()
                    .find(|a| a.host_pool == p["name"])
                    .unwrap();
                for k in 0..2 {
                    let g = format!("group-{}", (i * 2 + k) % size.groups);
                    assert!(ag.members.contains(&g), "{g} not on {}", ag.name);
                }
                assert!(ag.members.contains(&change), "{change} not on {}", ag.name);
            }
        }
        assert_eq!(
            Size::of(Scale::Small).times(10).packages,
            Size::of(Scale::Large).packages
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
