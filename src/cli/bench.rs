//! `appattach bench`: the operator at the size of a real estate, against the local control
//! plane and the emulator, measured. Not part of `cargo test`; BENCHMARKS.md holds its
//! figures and the commands that give them.
//!
//! One run: start etcd and kube-apiserver, install the CRDs, start the emulator with a
//! generated world (with `--arm-budget`, enforcing ARM's request budget), create the
//! packages and assignments, then start the controller (this binary, as its own process,
//! so its CPU and memory are its own) and measure:
//! - cold start: controller start to every object Ready, against its floor: without the
//!   budget, the same writes (status writes to the API server and backend objects to a
//!   fresh emulator) by a client without logic, with the same concurrency; with it, ARM's
//!   floor, the writes the estate needs and the reads of one snapshot at ARM's rates;
//! - backend reads and writes per package, and status writes per object;
//! - steady state over several resyncs: backend writes, status writes, reads per resync,
//!   CPU seconds;
//! - change latency: one assignment changed, to the backend write, p50 and p99, at a quiet
//!   time and while a restarted controller's first passes run;
//! - requests the budget refused (429), which should be none;
//! - the controller's peak and steady RSS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::backend::Backend as _;
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

    /// Packages (each with one HostPoolAssignment and two UserAssignments), instead of the
    /// --scale's.
    #[arg(long, conflicts_with = "scaling", value_parser = clap::value_parser!(u64).range(1..))]
    pub packages: Option<u64>,

    /// Host pools, instead of the --scale's.
    #[arg(long, conflicts_with = "scaling", value_parser = clap::value_parser!(u64).range(1..))]
    pub host_pools: Option<u64>,

    /// Session hosts in each host pool, instead of the --scale's (2 at tiny, 10 at small
    /// and large).
    #[arg(long, conflicts_with = "scaling", value_parser = clap::value_parser!(u64).range(1..))]
    pub session_hosts_per_pool: Option<u64>,

    /// Host pools each package is assigned to (consecutive ones, in rings 0, 1, 2, 0, ...),
    /// or `all`: every host pool.
    #[arg(long, default_value = "2", value_parser = parse_pools_per_package)]
    pub pools_per_package: PoolsPerPackage,

    /// Enforce ARM's request budget in the emulator (reads 250 at once then 25 a second,
    /// writes and deletes 200 then 10, per caller), and run the controller within it
    /// (--arm-read-limit 249/25 --arm-write-limit 199/10 --arm-delete-limit 199/10). The
    /// cold start is then compared with ARM's floor.
    #[arg(long)]
    pub arm_budget: bool,

    /// Print the results as JSON rather than tables.
    #[arg(long)]
    pub json: bool,

    /// Assignment changes timed for the change latency (at a quiet time, and as many
    /// while a restarted controller's first passes run).
    #[arg(long, default_value_t = 100)]
    pub changes: usize,

    /// The controller's resync period (and backend refresh period) during the steady
    /// state.
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

/// How many host pools each package goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolsPerPackage {
    /// This many (consecutive) host pools.
    Count(usize),
    /// Every host pool.
    All,
}

fn parse_pools_per_package(s: &str) -> Result<PoolsPerPackage, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(PoolsPerPackage::All);
    }
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(PoolsPerPackage::Count(n)),
        _ => Err(format!(
            "{s:?} is neither a number of host pools (1 or more) nor `all`"
        )),
    }
}

/// The shape a run's size is given by flags, over its named scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// `--packages`.
    pub packages: Option<usize>,
    /// `--host-pools`.
    pub host_pools: Option<usize>,
    /// `--session-hosts-per-pool`.
    pub session_hosts_per_pool: Option<usize>,
    /// `--pools-per-package`.
    pub pools_per_package: PoolsPerPackage,
}

impl Args {
    fn shape(&self) -> Shape {
        let n = |v: Option<u64>| v.map(|v| usize::try_from(v).unwrap_or(usize::MAX));
        Shape {
            packages: n(self.packages),
            host_pools: n(self.host_pools),
            session_hosts_per_pool: n(self.session_hosts_per_pool),
            pools_per_package: self.pools_per_package,
        }
    }

    /// The sizes to run, in order.
    fn sizes(&self) -> anyhow::Result<Vec<Size>> {
        let named: Vec<Size> = match &self.scaling {
            Some(f) if !f.is_empty() => {
                f.iter().map(|k| Size::of(Scale::Small).times(*k)).collect()
            }
            _ => vec![Size::of(self.scale)],
        };
        named.into_iter().map(|s| s.shaped(&self.shape())).collect()
    }
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
    /// Host pools each package's HostPoolAssignment lists.
    pub pools_per_package: usize,
}

impl Size {
    /// The size of a named scale (each package on two host pools).
    pub fn of(scale: Scale) -> Self {
        match scale {
            Scale::Tiny => Self {
                packages: 20,
                host_pools: 5,
                session_hosts: 10,
                users: 100,
                groups: 10,
                pools_per_package: 2,
            },
            Scale::Small => Self {
                packages: 1_000,
                host_pools: 50,
                session_hosts: 500,
                users: 5_000,
                groups: 100,
                pools_per_package: 2,
            },
            Scale::Large => Self {
                packages: 10_000,
                host_pools: 500,
                session_hosts: 5_000,
                users: 50_000,
                groups: 1_000,
                pools_per_package: 2,
            },
        }
    }

    /// This size times `k` (the host pools a package goes to stay as they are).
    pub fn times(self, k: u32) -> Self {
        let k = k as usize;
        Self {
            packages: self.packages * k,
            host_pools: self.host_pools * k,
            session_hosts: self.session_hosts * k,
            users: self.users * k,
            groups: self.groups * k,
            pools_per_package: self.pools_per_package,
        }
    }

    /// This size with the counts `shape` gives: session hosts per pool stay as they were
    /// unless given; users and groups stay as they are.
    pub fn shaped(self, shape: &Shape) -> anyhow::Result<Self> {
        let per_pool = (self.session_hosts / self.host_pools.max(1)).max(1);
        let host_pools = shape.host_pools.unwrap_or(self.host_pools);
        let packages = shape.packages.unwrap_or(self.packages);
        let pools_per_package = match shape.pools_per_package {
            PoolsPerPackage::All => host_pools,
            PoolsPerPackage::Count(n) => n,
        };
        if host_pools == 0 || packages == 0 {
            bail!("a run needs at least one package and one host pool");
        }
        if pools_per_package == 0 || pools_per_package > host_pools {
            bail!(
                "--pools-per-package {pools_per_package} is more than the {host_pools} host pools: give at most {host_pools}, or all"
            );
        }
        // Four distinct groups a package: its two, and one for each kind of change.
        if self.groups < 8 {
            bail!("a run needs at least 8 groups");
        }
        Ok(Self {
            packages,
            host_pools,
            session_hosts: host_pools * shape.session_hosts_per_pool.unwrap_or(per_pool),
            pools_per_package,
            ..self
        })
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

/// The host pools package `i` goes to: `pools_per_package` consecutive ones from `i`.
pub fn package_pools(size: &Size, i: usize) -> impl Iterator<Item = usize> + '_ {
    (0..size.pools_per_package).map(move |k| (i + k) % size.host_pools)
}

/// The groups of package `i`: its two UserAssignments' (0 and 1), the one the change at a
/// quiet time adds (2) and the one the change during a restart adds (3). Distinct while
/// there are 8 groups or more.
pub fn package_groups(size: &Size, i: usize) -> [usize; 4] {
    let g = size.groups;
    [
        (2 * i) % g,
        (2 * i + 1) % g,
        (2 * i + 7) % g,
        (2 * i + 5) % g,
    ]
}

/// The world of a size: `westeurope` host pools with Windows 11 session hosts (each a VM
/// of the Windows 11 image in the world's resource group, so a snapshot refresh lists the
/// VMs once, every page), a Desktop
/// application group each whose members are the groups of the packages on its pool, and a
/// directory of users spread over the groups.
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
    // The groups each pool must admit: those of the packages on it and of the changes the
    // bench makes (see `manifests` and `package_groups`).
    let mut needed: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); size.host_pools];
    for i in 0..size.packages {
        for p in package_pools(size, i) {
            needed[p].extend(package_groups(size, i));
        }
    }
    // Each application group admits the ten groups around 2p, which at the named scales
    // (each package on two pools, twice as many groups as pools) are all it needs, and
    // then whatever else the shape's packages need. Every group on every pool would be
    // H x G role assignments (500,000 at large), which no estate has.
    let app_groups: Vec<Value> = (0..size.host_pools)
        .map(|p| {
            let mut members: Vec<usize> = Vec::new();
            let around = (0..10).map(|k| (2 * p + size.groups * 2 + k - 2) % size.groups);
            for g in around.chain(needed[p].iter().copied()) {
                if !members.contains(&g) {
                    members.push(g);
                }
            }
            let members: Vec<&String> = members.iter().map(|g| &groups[*g]).collect();
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

/// A group as a UserAssignment names it.
fn principal(g: usize) -> Value {
    json!({"kind": "Group", "name": format!("group-{g}"), "objectId": uuid(2, g)})
}

/// The four objects of package `i`: the package, its host pools (`pools_per_package` of
/// them, rings 0, 1, 2, 0, ...), and two groups.
pub fn manifests(size: &Size, i: usize) -> [Value; 4] {
    let name = format!("app-{i}");
    let groups = package_groups(size, i);
    let users = |k: usize| {
        json!({"apiVersion": "appattach.io/v1alpha1", "kind": "UserAssignment",
               "metadata": {"name": format!("{name}-users-{k}")},
               "spec": {"packageRef": {"name": name}, "principals": [principal(groups[k])]}})
    };
    let pools: Vec<Value> = package_pools(size, i)
        .enumerate()
        .map(|(k, p)| json!({"name": format!("hp-{p}"), "ring": k % 3}))
        .collect();
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
               "spec": {"packageRef": {"name": name}, "hostPools": pools}}),
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
    /// Whether the emulator enforced ARM's request budget, and the controller ran within it.
    pub arm_budget: bool,
    /// Creating the objects (before the controller starts), seconds.
    pub create_seconds: f64,
    /// Controller start to every object Ready, seconds.
    pub cold_start_seconds: f64,
    /// The floor the cold start is compared with, seconds: ARM's floor with the budget,
    /// the measured floor without.
    pub floor_seconds: f64,
    /// Which floor `floorSeconds` is: `arm` or `measured`.
    pub floor_kind: String,
    /// Cold start over floor; none when the floor is 0.
    pub cold_over_floor: Option<f64>,
    /// The same writes by a client without logic, seconds (not run under ARM's budget,
    /// whose floor is ARM's).
    pub measured_floor_seconds: Option<f64>,
    /// ARM's floor: what the estate needs at ARM's rates, and how it was computed.
    pub arm_floor: ArmFloor,
    /// Backend requests per package on cold start, by method.
    pub requests_per_package: BTreeMap<String, f64>,
    /// Backend reads (GET) on cold start, all told.
    pub cold_backend_reads: u64,
    /// Backend writes (PUT, PATCH, POST, DELETE) on cold start, all told.
    pub cold_backend_writes: u64,
    /// Backend reads per package on cold start.
    pub reads_per_package: f64,
    /// Backend writes per package on cold start.
    pub writes_per_package: f64,
    /// Requests the controller's own budget held back on cold start (its
    /// `appattach_arm_throttled_total{source="client"}`).
    pub cold_client_waits: u64,
    /// Status writes to the API server per object on cold start.
    pub status_writes_per_object: f64,
    /// Backend writes during the steady state.
    pub steady_backend_writes: u64,
    /// Status writes during the steady state.
    pub steady_status_writes: u64,
    /// Backend reads a second during the steady state.
    pub steady_backend_reads_per_second: f64,
    /// Backend reads during the steady state, all told.
    pub steady_backend_reads: u64,
    /// Snapshot refreshes during the steady state (one at start, one a resync).
    pub steady_snapshot_refreshes: u64,
    /// Backend reads during the steady state over the snapshot refreshes in it.
    pub reads_per_resync: f64,
    /// How long the steady state was watched, seconds.
    pub steady_seconds: f64,
    /// Controller CPU seconds during the steady state.
    pub steady_cpu_seconds: f64,
    /// Controller CPU seconds for the cold start.
    pub cold_cpu_seconds: f64,
    /// Backend reads (requests, every page) of one snapshot refresh of the finished estate.
    pub snapshot_refresh_reads: u64,
    /// The list and read calls of that refresh (a list of several pages is one call).
    pub snapshot_refresh_calls: u64,
    /// Assignment change to its backend write at a quiet time: median, ms.
    pub change_p50_ms: f64,
    /// Assignment change to its backend write at a quiet time: 99th percentile, ms.
    pub change_p99_ms: f64,
    /// Backend writes per change.
    pub writes_per_change: f64,
    /// Changes timed (at a quiet time, and again during a restart).
    pub changes: usize,
    /// Assignment change to its backend write, made as a restarted controller starts
    /// (without waiting for it): median, ms.
    pub restart_change_p50_ms: f64,
    /// The same, 99th percentile, ms.
    pub restart_change_p99_ms: f64,
    /// Of those changes, how many were made before the restarted controller had passed
    /// over every package.
    pub restart_changes_before_first_passes: usize,
    /// Restarted controller start to ready (`/readyz`: caches listed, first picture of
    /// the backend read), seconds.
    pub restart_ready_seconds: Option<f64>,
    /// Restarted controller start to its first complete picture of the backend (its first
    /// snapshot refresh), seconds: no pass decides before it.
    pub restart_picture_seconds: Option<f64>,
    /// Restarted controller start to as many package passes, beyond those made before its
    /// first picture (which only requeue themselves), as there are packages: about its first
    /// passes (a change's pass counts too), seconds.
    pub restart_first_passes_seconds: Option<f64>,
    /// Backend writes during the restart: the changes' and any of the first passes.
    pub restart_backend_writes: u64,
    /// Requests the emulator's budget refused with 429, by phase (cold, changes, restart,
    /// steady); all 0 without the budget, and should be with it.
    pub budget_refused: BTreeMap<String, u64>,
    /// The controller's peak RSS (cold start and the quiet changes), MiB.
    pub peak_rss_mib: f64,
    /// The controller's RSS after the steady state, MiB.
    pub steady_rss_mib: f64,
}

/// ARM's floor for a cold start: no tool on Azure makes the estate Ready sooner.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmFloor {
    /// max(0, W − write burst) / write rate + max(0, R − read burst) / read rate, seconds.
    pub seconds: f64,
    /// W: the backend objects the cold start wrote (each counted once, whatever it took).
    pub writes: u64,
    /// Of them, app attach packages.
    pub package_writes: u64,
    /// Of them, role assignments.
    pub role_writes: u64,
    /// R: the reads of one snapshot refresh of the finished estate.
    pub reads: u64,
    /// The computation, with its figures.
    pub formula: String,
}

impl ArmFloor {
    /// The floor of `writes` backend objects and a snapshot of `reads` requests at ARM's
    /// published rates.
    pub fn of(writes: u64, package_writes: u64, role_writes: u64, reads: u64) -> Self {
        let arm = crate::budget::Limits::ARM;
        let ((wb, wr), (rb, rr)) = (arm.writes, arm.reads);
        let w = writes.saturating_sub(u64::from(wb)) as f64 / wr;
        let r = reads.saturating_sub(u64::from(rb)) as f64 / rr;
        Self {
            seconds: w + r,
            writes,
            package_writes,
            role_writes,
            reads,
            formula: format!(
                "max(0, W {writes} − {wb})/{wr} + max(0, R {reads} − {rb})/{rr} = {w:.1} + {r:.1} = {:.1} s \
                 (W: {package_writes} packages + {role_writes} role assignments + {} other objects the cold start wrote; \
                 R: the requests of one snapshot refresh)",
                w + r,
                writes - package_writes - role_writes
            ),
        }
    }
}

/// The controller's budget within ARM's: one token less of burst, as the emulator counts
/// a request a little after the client does.
const CLIENT_LIMITS: [(&str, &str); 3] = [
    ("--arm-read-limit", "249/25"),
    ("--arm-write-limit", "199/10"),
    ("--arm-delete-limit", "199/10"),
];

pub async fn run(args: Args) -> anyhow::Result<()> {
    let sizes = args.sizes()?;
    let binaries = match &args.control_plane_bin {
        Some(dir) => Binaries::from_dir(dir.clone())?,
        None => {
            eprintln!("bench: building (or reusing) the control-plane binaries...");
            Binaries::build()?
        }
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
        println!("Scaling (one column a run):");
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
        "bench: {} packages on {} host pools each, {} assignments, {} host pools, {} session hosts, {} users{}",
        size.packages,
        size.pools_per_package,
        size.packages * 3,
        size.host_pools,
        size.session_hosts,
        size.users,
        if args.arm_budget {
            ", ARM's request budget enforced"
        } else {
            ""
        }
    );
    let cp = ControlPlane::start(binaries).await?;
    cp.install_crds(&crate::resources::crds_yaml()?)?;
    let client = cp.client().await?;
    let world = world(&size);
    let started = Instant::now();
    let emulator = Emulator::start(emulator::Config {
        world: Some(world.clone()),
        arm_budget: args.arm_budget.then_some(emulator::Budget::ARM),
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
    // The production resync (30 minutes) and backend refresh (10 minutes) for the cold
    // start and the changes: a resync shorter than the cold start would add passes to it
    // and to the changes' queue. Every controller process calls the backend with the same
    // User-Agent, so with the budget they share one, as replicas with one identity do.
    let spawn = |resync: Duration,
                 backend_refresh: Option<Duration>|
     -> anyhow::Result<ControllerProcess> {
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
        command
            .args(["controller", "--arm-endpoint", &emulator.url()])
            .args(["--subscription", &world.subscription])
            .args(["--resource-group", &world.resource_group])
            .args(["--resync", &humantime::format_duration(resync).to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")]);
        if let Some(every) = backend_refresh {
            command.args([
                "--backend-refresh",
                &humantime::format_duration(every).to_string(),
            ]);
        }
        if args.arm_budget {
            for (flag, limit) in CLIENT_LIMITS {
                command.args([flag, limit]);
            }
        }
        Ok(ControllerProcess(
            command
                .env("KUBECONFIG", cp.kubeconfig())
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("starting the controller")?,
        ))
    };
    let production = Duration::from_secs(1800);
    let mut controller = spawn(production, None)?;
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
        if cold.elapsed() > Duration::from_secs(3600 * 3) {
            bail!("not every object was Ready within three hours ({ready}/{total})");
        }
        // Each scrape counts every cached object: often enough for a figure in seconds,
        // rarely enough not to weigh on the controller being measured.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cold_start_seconds = cold.elapsed().as_secs_f64();
    let cold_cpu_seconds = cpu_seconds(controller.pid())?;
    eprintln!("bench: cold start {cold_start_seconds:.1}s");
    let counts = emulator_counts(&http, &emulator.url()).await?;
    let mut budget_refused = BTreeMap::new();
    budget_refused.insert("cold".to_string(), refused(&counts));
    let cold_client_waits = scrape(
        &http,
        &metrics,
        "appattach_arm_throttled_total",
        &["source=\"client\""],
    )
    .await
    .unwrap_or(0.0) as u64;
    let packages = size.packages as f64;
    let requests_per_package = counts
        .by_method
        .iter()
        .map(|(m, n)| (m.clone(), *n as f64 / packages))
        .collect();
    let cold_backend_reads = counts.by_method.get("GET").copied().unwrap_or(0);
    let cold_backend_writes = counts.writes;
    // The writes the estate needs: each backend object the cold start wrote, once.
    let written: BTreeSet<&str> = counts
        .applied
        .iter()
        .filter(|w| w.method != "DELETE")
        .map(|w| w.path.as_str())
        .collect();
    let package_writes = written
        .iter()
        .filter(|p| is_kind(p, "appattachpackages"))
        .count() as u64;
    let role_writes = written
        .iter()
        .filter(|p| is_kind(p, "roleassignments"))
        .count() as u64;
    let estate_writes = written.len() as u64;
    let status_cold = status_writes(&cp)? - status_before;
    let status_writes_per_object = status_cold as f64 / total;

    // Change latency at a quiet time: one UserAssignment at a time gets a second group;
    // timed until the backend has its role assignment.
    let changes = args.changes.min(size.packages);
    let changer = Changer {
        client: &client,
        size: &size,
        world: &world,
        emulator: &emulator.emulator,
        changes,
        timeout: Duration::from_secs(if args.arm_budget { 600 } else { 120 }),
    };
    reset_counts(&http, &emulator.url()).await?;
    let mut latencies = Vec::with_capacity(changes);
    for c in 0..changes {
        controller.check_alive()?;
        latencies.push(changer.one(c, Change::Quiet).await?);
    }
    let counts = emulator_counts(&http, &emulator.url()).await?;
    budget_refused.insert("changes".to_string(), refused(&counts));
    let writes_per_change = counts.writes as f64 / changes.max(1) as f64;
    latencies.sort_by(f64::total_cmp);
    let (peak, _) = rss(controller.pid())?;
    drop(controller);

    // Change latency during a restart: a new controller, and at once (not waiting for it
    // to be ready) the changes, one at a time, each to the other UserAssignment of the
    // same packages, while its first passes go over every package.
    reset_counts(&http, &emulator.url()).await?;
    let restart = Instant::now();
    let mut controller = spawn(production, None)?;
    let progress = RestartProgress::watch(http.clone(), metrics.clone(), size.packages);
    let mut restart_latencies = Vec::with_capacity(changes);
    let mut before_first_passes = 0;
    for c in 0..changes {
        controller.check_alive()?;
        if progress.get().first_passes.is_none() {
            before_first_passes += 1;
        }
        restart_latencies.push(changer.one(c, Change::DuringRestart).await?);
    }
    eprintln!(
        "bench: {changes} changes during a restart, {before_first_passes} of them before its first passes were done"
    );
    // Its first passes, to their end (they write nothing on an estate already Ready).
    while (progress.get().first_passes.is_none() || progress.get().ready.is_none())
        && restart.elapsed() < Duration::from_secs(600)
    {
        controller.check_alive()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    progress.stop();
    let progress = progress.get();
    let counts = emulator_counts(&http, &emulator.url()).await?;
    budget_refused.insert("restart".to_string(), refused(&counts));
    let restart_backend_writes = counts.writes;
    restart_latencies.sort_by(f64::total_cmp);
    drop(controller);

    // Steady state: resyncs only. A controller with the bench's resync, and a backend
    // refresh as often, so that each resync period holds one refresh: its first passes
    // and then --resyncs resyncs, none of which should write.
    let mut controller = spawn(args.resync, Some(args.resync))?;
    reset_counts(&http, &emulator.url()).await?;
    // A new process: its count starts at 0 (the scrape fails until it serves metrics).
    let refreshes_before = refreshes(&http, &metrics).await.unwrap_or(0.0);
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
    let steady_snapshot_refreshes =
        (refreshes(&http, &metrics).await.unwrap_or(0.0) - refreshes_before).max(0.0) as u64;
    budget_refused.insert("steady".to_string(), refused(&counts));
    let steady_backend_writes = counts.writes;
    let steady_backend_reads = counts.by_method.get("GET").copied().unwrap_or(0);
    let steady_backend_reads_per_second = steady_backend_reads as f64 / steady_seconds;
    let reads_per_resync = steady_backend_reads as f64 / steady_snapshot_refreshes.max(1) as f64;
    let steady_status_writes = status_writes(&cp)? - status_before;
    let steady_cpu_seconds = cpu_seconds(controller.pid())? - cpu_before;
    let (_, steady_rss) = rss(controller.pid())?;
    drop(controller);

    // The reads of one snapshot refresh of the finished estate, counted alone.
    reset_counts(&http, &emulator.url()).await?;
    let (snapshot_refresh_reads, snapshot_refresh_calls) =
        refresh_reads(&http, &emulator.url(), &world, args.arm_budget).await?;
    let arm_floor = ArmFloor::of(
        estate_writes,
        package_writes,
        role_writes,
        snapshot_refresh_reads,
    );
    eprintln!("bench: ARM's floor: {}", arm_floor.formula);

    // The floor: the same writes, by a client without logic, in the same run. Under
    // ARM's budget the floor is ARM's, and this one (30,000 more writes at the large
    // scale) is left out.
    let measured_floor_seconds = if args.arm_budget {
        None
    } else {
        eprintln!("bench: the measured floor (the same writes without logic)");
        Some(
            floor(
                &client,
                &http,
                &emulator,
                &world,
                &size,
                args.concurrency,
                status_writes_per_object,
            )
            .await?,
        )
    };
    emulator.shutdown().await;
    drop(cp);
    let (floor_seconds, floor_kind) = match measured_floor_seconds {
        Some(measured) => (measured, "measured"),
        None => (arm_floor.seconds, "arm"),
    };
    Ok(Figures {
        size,
        arm_budget: args.arm_budget,
        create_seconds,
        cold_start_seconds,
        floor_seconds,
        floor_kind: floor_kind.to_string(),
        cold_over_floor: (floor_seconds > 0.0).then(|| cold_start_seconds / floor_seconds),
        measured_floor_seconds,
        arm_floor,
        requests_per_package,
        cold_backend_reads,
        cold_backend_writes,
        reads_per_package: cold_backend_reads as f64 / packages,
        writes_per_package: cold_backend_writes as f64 / packages,
        cold_client_waits,
        status_writes_per_object,
        steady_backend_writes,
        steady_status_writes,
        steady_backend_reads_per_second,
        steady_backend_reads,
        steady_snapshot_refreshes,
        reads_per_resync,
        steady_seconds,
        steady_cpu_seconds,
        cold_cpu_seconds,
        snapshot_refresh_reads,
        snapshot_refresh_calls,
        change_p50_ms: percentile(&latencies, 0.50),
        change_p99_ms: percentile(&latencies, 0.99),
        writes_per_change,
        changes,
        restart_change_p50_ms: percentile(&restart_latencies, 0.50),
        restart_change_p99_ms: percentile(&restart_latencies, 0.99),
        restart_changes_before_first_passes: before_first_passes,
        restart_ready_seconds: progress.ready,
        restart_picture_seconds: progress.picture,
        restart_first_passes_seconds: progress.first_passes,
        restart_backend_writes,
        budget_refused,
        peak_rss_mib: peak as f64 / 1048576.0,
        steady_rss_mib: steady_rss as f64 / 1048576.0,
    })
}

/// Whether an ARM path names an object of this (lower-case) type, as its last type.
fn is_kind(path: &str, kind: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    segments.len() >= 2 && segments[segments.len() - 2].eq_ignore_ascii_case(kind)
}

/// Requests the budget refused, of every kind.
fn refused(counts: &CountsView) -> u64 {
    let r = counts.budget_refused;
    r.reads + r.writes + r.deletes
}

/// The two kinds of change the bench times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// `app-i-users-0` gets package i's third group, at a quiet time.
    Quiet,
    /// `app-i-users-1` gets its fourth, as a restarted controller starts.
    DuringRestart,
}

/// Makes and times changes of assignments.
struct Changer<'a> {
    client: &'a kube::Client,
    size: &'a Size,
    world: &'a World,
    emulator: &'a Emulator,
    /// How many changes a series has: they spread over the packages.
    changes: usize,
    /// How long one may take before the run fails.
    timeout: Duration,
}

impl Changer<'_> {
    /// Change `c` of a series: one UserAssignment gets a second group; timed from the
    /// PATCH until the backend has its role assignment (read in-process, every 5 ms, so
    /// neither the emulator's counts nor its budget see the bench).
    async fn one(&self, c: usize, change: Change) -> anyhow::Result<f64> {
        let spread = (self.size.packages / self.changes.max(1)).max(1);
        let i = c * spread;
        let ns = &namespaces(self.size)[i / 1000];
        let groups = package_groups(self.size, i);
        let (k, added) = match change {
            Change::Quiet => (0, groups[2]),
            Change::DuringRestart => (1, groups[3]),
        };
        let object_id = uuid(2, added);
        let patch = json!({"spec": {"principals": [principal(groups[k]), principal(added)]}});
        let scope = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DesktopVirtualization/appAttachPackages/{}",
            self.world.subscription,
            self.world.resource_group,
            crate::domain::naming::backend_name(ns, &format!("app-{i}"))
        );
        let t = Instant::now();
        api(self.client, ns, "UserAssignment")
            .patch(
                &format!("app-{i}-users-{k}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        while !role_assigned(self.emulator, &scope, &object_id) {
            if t.elapsed() > self.timeout {
                bail!(
                    "change {c} ({change:?}, app-{i}) did not reach the backend within {}s",
                    self.timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }
}

/// Whether the backend has a role assignment of `object_id` at `scope`.
fn role_assigned(emulator: &Emulator, scope: &str, object_id: &str) -> bool {
    emulator
        .lock()
        .store
        .roles_at(scope)
        .any(|r| r["properties"]["principalId"] == object_id)
}

/// How a restarted controller gets on, polled from its probes and metrics every 250 ms,
/// in seconds from its start.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// `/readyz` answered ready (caches listed, first picture of the backend read).
    ready: Option<f64>,
    /// Its first snapshot refresh succeeded: passes decide from then on (before it they
    /// only requeue themselves, and are counted as passes all the same).
    picture: Option<f64>,
    /// Package passes counted at the last poll before the first refresh was seen: passes
    /// that only requeued themselves (a package's pass before the picture comes again
    /// 500 ms later).
    passes_before_picture: f64,
    /// As many package passes beyond those as there are packages: about its first passes.
    /// Early by the requeued passes of the last poll before the picture (at most a poll
    /// and a requeue, 750 ms) and by the changes' passes; never waits for passes that
    /// came before it was watched.
    first_passes: Option<f64>,
}

struct RestartProgress {
    state: Arc<Mutex<Progress>>,
    task: tokio::task::JoinHandle<()>,
}

impl RestartProgress {
    fn watch(http: reqwest::Client, metrics: String, packages: usize) -> Self {
        let state = Arc::new(Mutex::new(Progress::default()));
        let shared = state.clone();
        let readyz = metrics.replace("/metrics", "/readyz");
        let started = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                let now = started.elapsed().as_secs_f64();
                let ready = match http.get(&readyz).send().await {
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                };
                let (passes, refreshed) = match http.get(&metrics).send().await {
                    Ok(r) => {
                        let text = r.text().await.unwrap_or_default();
                        let passes = sum_metric(
                            &text,
                            "appattach_reconciles_total",
                            &["kind=\"AppAttachPackage\""],
                        );
                        let refreshed = sum_metric(
                            &text,
                            "appattach_backend_snapshot_refreshes_total",
                            &["result=\"success\""],
                        );
                        (passes, refreshed)
                    }
                    Err(_) => (0.0, 0.0),
                };
                {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    if ready && s.ready.is_none() {
                        s.ready = Some(now);
                    }
                    if s.picture.is_none() {
                        if refreshed >= 1.0 {
                            s.picture = Some(now);
                        } else {
                            s.passes_before_picture = passes;
                        }
                    }
                    if s.picture.is_some()
                        && s.first_passes.is_none()
                        && passes - s.passes_before_picture >= packages as f64
                    {
                        s.first_passes = Some(now);
                    }
                    if s.ready.is_some() && s.first_passes.is_some() {
                        return;
                    }
                }
                // As the cold start's poll: each scrape counts every cached object.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self { state, task }
    }

    fn get(&self) -> Progress {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// Completed snapshot refreshes, from the controller's metrics.
async fn refreshes(http: &reqwest::Client, metrics: &str) -> anyhow::Result<f64> {
    scrape(
        http,
        metrics,
        "appattach_backend_snapshot_refreshes_total",
        &["result=\"success\""],
    )
    .await
}

/// The sum of a metric's series that carry every label given, from a Prometheus text
/// page.
async fn scrape(
    http: &reqwest::Client,
    metrics: &str,
    name: &str,
    labels: &[&str],
) -> anyhow::Result<f64> {
    let text = http
        .get(metrics)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(sum_metric(&text, name, labels))
}

fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|want| l.contains(want))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The requests and the list calls of one snapshot refresh, as the controller makes it,
/// by a client of its own (its own User-Agent, so with the budget its own bucket, and
/// within it as the controller is). Counts are reset before.
async fn refresh_reads(
    http: &reqwest::Client,
    url: &str,
    world: &World,
    budget: bool,
) -> anyhow::Result<(u64, u64)> {
    let mut probe = crate::backend::ArmClient::new(
        url,
        &world.subscription,
        &world.resource_group,
        crate::backend::Auth::None,
    )
    .with_instance("appattach-bench");
    if budget {
        let mut limits = crate::budget::Limits::ARM;
        limits.reads.0 -= 1;
        limits.writes.0 -= 1;
        limits.deletes.0 -= 1;
        probe = probe.with_limits(limits);
    }
    let snapshot = crate::backend::snapshot::Snapshot::new();
    snapshot
        .refresh(&probe.patient())
        .await
        .context("a snapshot refresh of the finished estate")?;
    let counts = emulator_counts(http, url).await?;
    Ok((
        counts.by_method.get("GET").copied().unwrap_or(0),
        snapshot.health().calls,
    ))
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

/// Every page of a list. With the budget the bench has one of its own (it calls without a
/// User-Agent): it waits out a 429's Retry-After.
async fn list_all(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = Some(url.to_string());
    while let Some(u) = next {
        let r = http.get(&u).send().await?;
        if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            next = Some(u);
            continue;
        }
        let page: Value = r.error_for_status()?.json().await?;
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
        std::iter::once("packages × pools each / assignments".to_string())
            .chain(runs.iter().map(|f| {
                format!(
                    "{} × {} / {}",
                    f.size.packages,
                    f.size.pools_per_package,
                    f.size.packages * 3
                )
            }))
            .collect(),
    ];
    let mut row = |name: &str, value: &dyn Fn(&Figures) -> String| {
        rows.push(
            std::iter::once(name.to_string())
                .chain(runs.iter().map(|f| value(f)))
                .collect(),
        );
    };
    let ms = |v: f64| format!("{v:.0}");
    row("host pools / session hosts", &|f| {
        format!("{} / {}", f.size.host_pools, f.size.session_hosts)
    });
    row("ARM's request budget", &|f| {
        if f.arm_budget { "enforced" } else { "off" }.to_string()
    });
    row("cold start (s)", &|f| {
        format!("{:.1}", f.cold_start_seconds)
    });
    row("floor (s)", &|f| {
        format!("{:.1} ({})", f.floor_seconds, f.floor_kind)
    });
    row("cold start / floor", &|f| {
        f.cold_over_floor
            .map_or_else(|| "— (floor 0)".to_string(), |r| format!("{r:.2}"))
    });
    row("measured floor (s)", &|f| {
        f.measured_floor_seconds
            .map_or_else(|| "— (under the budget)".to_string(), |m| format!("{m:.1}"))
    });
    row("ARM floor (s)", &|f| f.arm_floor.formula.clone());
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
    row("backend reads / writes, cold start", &|f| {
        format!(
            "{} / {} ({:.2} / {:.2} per package)",
            f.cold_backend_reads, f.cold_backend_writes, f.reads_per_package, f.writes_per_package
        )
    });
    row("held back by the client's budget, cold start", &|f| {
        f.cold_client_waits.to_string()
    });
    row("snapshot refresh: reads (list calls)", &|f| {
        format!(
            "{} ({})",
            f.snapshot_refresh_reads, f.snapshot_refresh_calls
        )
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
    row("steady: reads per resync", &|f| {
        format!(
            "{:.1} ({} reads / {} refreshes)",
            f.reads_per_resync, f.steady_backend_reads, f.steady_snapshot_refreshes
        )
    });
    row("steady: CPU s over the window", &|f| {
        format!("{:.2} / {:.0}s", f.steady_cpu_seconds, f.steady_seconds)
    });
    row("change → backend p50 (ms)", &|f| ms(f.change_p50_ms));
    row("change → backend p99 (ms)", &|f| ms(f.change_p99_ms));
    row("backend writes per change", &|f| {
        format!("{:.2}", f.writes_per_change)
    });
    row("change during restart p50 (ms)", &|f| {
        ms(f.restart_change_p50_ms)
    });
    row("change during restart p99 (ms)", &|f| {
        ms(f.restart_change_p99_ms)
    });
    row("restart: picture / ready / first passes done (s)", &|f| {
        let s = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.1}"));
        format!(
            "{} / {} / {} ({} of {} changes before)",
            s(f.restart_picture_seconds),
            s(f.restart_ready_seconds),
            s(f.restart_first_passes_seconds),
            f.restart_changes_before_first_passes,
            f.changes
        )
    });
    row("restart: backend writes", &|f| {
        f.restart_backend_writes.to_string()
    });
    row("refused by the budget (429)", &|f| {
        f.budget_refused
            .iter()
            .map(|(phase, n)| format!("{phase} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
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

    /// The shapes the bench is run at, small enough to check here in full.
    fn shapes() -> Vec<Size> {
        let shape = |packages, host_pools, per_pool, pools_per_package| Shape {
            packages,
            host_pools,
            session_hosts_per_pool: per_pool,
            pools_per_package,
        };
        let tiny = Size::of(Scale::Tiny);
        let small = Size::of(Scale::Small);
        vec![
            tiny,
            small,
            small.times(2),
            tiny.shaped(&shape(None, None, None, PoolsPerPackage::All))
                .unwrap(),
            // 100 packages on every one of 40 host pools of 2 session hosts.
            small
                .shaped(&shape(Some(100), Some(40), Some(2), PoolsPerPackage::All))
                .unwrap(),
            // 1,000 packages on 20 host pools each.
            small
                .shaped(&shape(None, None, None, PoolsPerPackage::Count(20)))
                .unwrap(),
            // Fewer groups than twice the pools, and pools that do not divide the packages.
            tiny.shaped(&shape(
                Some(37),
                Some(13),
                Some(1),
                PoolsPerPackage::Count(4),
            ))
            .unwrap(),
        ]
    }

    #[test]
    fn a_generated_world_and_its_manifests_agree() {
        for size in shapes() {
            let world = world(&size);
            world
                .check_locations()
                .expect("ARM takes the world's regions");
            assert_eq!(world.host_pools.len(), size.host_pools);
            let hosts: usize = world.host_pools.iter().map(|p| p.session_hosts.len()).sum();
            assert_eq!(hosts, size.session_hosts);
            // Each host a VM of the world's resource group: one more list per refresh.
            assert!(world.check().is_ok(), "{:?}", world.check());
            assert_eq!(world.vms().count(), size.session_hosts);
            assert_eq!(world.directory.users.len(), size.users);
            for i in 0..size.packages {
                let [pkg, pools, users0, users1] = manifests(&size, i);
                let location = pkg["spec"]["location"].as_str().unwrap();
                let kind = crate::arm::ResourceType::AppAttachPackage.arm_type();
                crate::arm::location::check_available(location, &kind).unwrap();
                assert_eq!(pools["spec"]["packageRef"]["name"], pkg["metadata"]["name"]);
                let listed = pools["spec"]["hostPools"].as_array().unwrap();
                assert_eq!(listed.len(), size.pools_per_package, "{size:?}");
                let names: BTreeSet<&str> =
                    listed.iter().map(|p| p["name"].as_str().unwrap()).collect();
                assert_eq!(names.len(), listed.len(), "a pool twice for app-{i}");
                for (k, p) in listed.iter().enumerate() {
                    assert!(world.host_pools.iter().any(|h| h.name == p["name"]));
                    assert_eq!(p["ring"], k % 3);
                }
                for users in [&users0, &users1] {
                    let group = &users["spec"]["principals"][0];
                    assert!(
                        world
                            .directory
                            .groups
                            .iter()
                            .any(|g| g.name == group["name"] && g.object_id == group["objectId"])
                    );
                }
                // Each group of the package, and the ones the changes add (distinct from
                // them), may use each pool.
                let groups = package_groups(&size, i);
                assert_eq!(groups.iter().collect::<BTreeSet<_>>().len(), 4);
                for p in listed {
                    let ag = world
                        .application_groups
                        .iter()
                        .find(|a| a.host_pool == p["name"])
                        .unwrap();
                    for g in groups {
                        let g = format!("group-{g}");
                        assert!(ag.members.contains(&g), "{g} not on {}", ag.name);
                    }
                }
            }
        }
        assert_eq!(
            Size::of(Scale::Small).times(10).packages,
            Size::of(Scale::Large).packages
        );
    }

    #[test]
    fn the_named_scales_keep_their_world() {
        // As before the shapes: each application group admits the ten groups around 2p.
        for size in [
            Size::of(Scale::Tiny),
            Size::of(Scale::Small),
            Size::of(Scale::Small).times(4),
        ] {
            let world = world(&size);
            for (p, ag) in world.application_groups.iter().enumerate() {
                let around: Vec<String> = (0..10)
                    .map(|k| format!("group-{}", (2 * p + size.groups * 2 + k - 2) % size.groups))
                    .collect();
                assert_eq!(ag.members, around);
            }
            let [_, pools, _, _] = manifests(&size, 3);
            assert_eq!(
                pools["spec"]["hostPools"],
                json!([{"name": "hp-3", "ring": 0}, {"name": "hp-4", "ring": 1}])
            );
        }
    }

    #[test]
    fn shapes_come_from_the_flags() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: Args,
        }
        let sizes = |line: &str| {
            Cli::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))
                .map_err(|e| e.to_string())
                .and_then(|c| c.bench.sizes().map_err(|e| e.to_string()))
        };
        let s = &sizes(
            "--packages 100 --host-pools 40 --session-hosts-per-pool 2 --pools-per-package all",
        )
        .unwrap()[0];
        assert_eq!(
            (
                s.packages,
                s.host_pools,
                s.session_hosts,
                s.pools_per_package
            ),
            (100, 40, 80, 40)
        );
        // Session hosts per pool stay the scale's when not given.
        let s = &sizes("--scale tiny --host-pools 7").unwrap()[0];
        assert_eq!((s.session_hosts, s.pools_per_package), (14, 2));
        let s = &sizes("--packages 1000 --pools-per-package 20").unwrap()[0];
        assert_eq!(
            (s.packages, s.host_pools, s.pools_per_package),
            (1000, 50, 20)
        );
        assert_eq!(sizes("--scale large").unwrap()[0], Size::of(Scale::Large));
        let scaled = sizes("--scaling 1,2 --pools-per-package all").unwrap();
        assert_eq!(
            scaled
                .iter()
                .map(|s| s.pools_per_package)
                .collect::<Vec<_>>(),
            [50, 100]
        );
        assert!(
            sizes("--scale tiny --pools-per-package 6")
                .unwrap_err()
                .contains("more than the 5 host pools")
        );
        assert!(sizes("--pools-per-package 0").is_err());
        assert!(sizes("--pools-per-package some").is_err());
        assert!(sizes("--scaling 1,2 --packages 10").is_err());
    }

    #[test]
    fn arms_floor_is_what_exceeds_the_bursts_at_the_rates() {
        let f = ArmFloor::of(300, 100, 200, 84);
        assert_eq!(f.seconds, 10.0);
        assert!(f.formula.contains("= 10.0 + 0.0 = 10.0 s"), "{}", f.formula);
        // 10,000 packages with two groups each, and a snapshot of 1,107 requests.
        let f = ArmFloor::of(30_000, 10_000, 20_000, 1_107);
        assert!(
            (f.seconds - (2_980.0 + 34.28)).abs() < 1e-9,
            "{}",
            f.seconds
        );
        assert_eq!(ArmFloor::of(60, 20, 40, 20).seconds, 0.0);
    }

    #[test]
    fn metrics_are_summed_by_name_and_labels() {
        let text = "\
# HELP appattach_reconciles Reconcile passes
appattach_reconciles_total{kind=\"AppAttachPackage\",result=\"success\"} 98
appattach_reconciles_total{kind=\"AppAttachPackage\",result=\"error\"} 2
appattach_reconciles_total{kind=\"UserAssignment\",result=\"success\"} 7
appattach_backend_snapshot_refreshes_total{result=\"success\"} 3
appattach_backend_snapshot_refreshes_total_other 5
";
        let sum = |name, labels: &[&str]| sum_metric(text, name, labels);
        assert_eq!(
            sum("appattach_reconciles_total", &["kind=\"AppAttachPackage\""]),
            100.0
        );
        assert_eq!(sum("appattach_reconciles_total", &[]), 107.0);
        assert_eq!(
            sum(
                "appattach_backend_snapshot_refreshes_total",
                &["result=\"success\""]
            ),
            3.0
        );
        assert!(is_kind(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.desktopvirtualization/appattachpackages/x",
            "appattachpackages"
        ));
        assert!(!is_kind(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.desktopvirtualization/appattachpackages/x/roleassignments",
            "appattachpackages"
        ));
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
