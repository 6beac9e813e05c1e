//! `appattach controller`: the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use k8s_openapi::api::coordination::v1::Lease;

use crate::backend::{ArmClient, Auth};
use crate::budget::parse_limit;
use crate::controller::{self, Config};
use crate::emulator::{self, Emulator, ShareMapping, World};

/// Arguments of `appattach controller`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ARM endpoint of the management backend (Azure: https://management.azure.com, or an
    /// emulator's URL). Absent: an emulator runs in-process.
    #[arg(long, env = "APPATTACH_ARM_ENDPOINT", requires_all = ["subscription", "resource_group"])]
    pub arm_endpoint: Option<String>,

    /// Subscription id of the backend resources.
    #[arg(long, env = "APPATTACH_SUBSCRIPTION")]
    pub subscription: Option<String>,

    /// Resource group of the backend resources.
    #[arg(long, env = "APPATTACH_RESOURCE_GROUP")]
    pub resource_group: Option<String>,

    /// A static bearer token for the backend.
    #[arg(long, env = "APPATTACH_ARM_TOKEN", hide_env_values = true)]
    pub arm_token: Option<String>,

    /// Run against this Azure cloud: AzurePublicCloud, AzureUSGovernment or
    /// AzureChinaCloud. Sets the ARM endpoint (unless --arm-endpoint is given) and the
    /// Entra ID authority (unless AZURE_AUTHORITY_HOST is set), and signs in with
    /// --azure-credential. Needs --subscription and --resource-group.
    #[arg(long, env = "APPATTACH_CLOUD")]
    pub cloud: Option<String>,

    /// How to sign in to Azure: auto (workload identity when AZURE_FEDERATED_TOKEN_FILE is
    /// set, a client secret when AZURE_CLIENT_SECRET is, else the managed identity),
    /// workload-identity, managed-identity or client-secret. Reads AZURE_TENANT_ID,
    /// AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_SECRET and
    /// AZURE_AUTHORITY_HOST.
    #[arg(long, env = "APPATTACH_AZURE_CREDENTIAL", default_value = "auto")]
    pub azure_credential: String,

    /// Budget of ARM reads, as BURST/RATE (requests at once / a second). With --cloud it
    /// defaults to ARM's published limit, 250/25; otherwise there is none.
    #[arg(long, value_parser = parse_limit)]
    pub arm_read_limit: Option<(u32, f64)>,

    /// Budget of ARM writes (PUT, PATCH, POST), as BURST/RATE; with --cloud, 200/10.
    #[arg(long, value_parser = parse_limit)]
    pub arm_write_limit: Option<(u32, f64)>,

    /// Budget of ARM deletes, as BURST/RATE; with --cloud, 200/10.
    #[arg(long, value_parser = parse_limit)]
    pub arm_delete_limit: Option<(u32, f64)>,

    /// The instance metadata token endpoint (managed identity).
    #[arg(
        long,
        env = "APPATTACH_IMDS_ENDPOINT",
        default_value = "http://169.254.169.254/metadata/identity/oauth2/token"
    )]
    pub imds_endpoint: String,

    /// Send the BackendTargets of this subscription to this ARM endpoint instead of the
    /// cloud's, as SUBSCRIPTION=URL; repeatable (an emulator per subscription, in tests).
    #[arg(long = "arm-endpoint-for", value_name = "SUBSCRIPTION=URL", value_parser = parse_endpoint_for)]
    pub arm_endpoints_for: Vec<(String, String)>,

    /// Serve no namespace without a BackendTarget: a package whose namespace has no
    /// target named `default` (and names none) is refused, rather than written with the
    /// operator's own identity to the operator's own subscription.
    #[arg(long, env = "APPATTACH_REQUIRE_BACKEND_TARGET")]
    pub require_backend_target: bool,

    /// Namespaces whose BackendTargets may use the managed identity of the controller's
    /// node (comma-separated). Any other namespace that asks for it is refused: the
    /// node's identity is the operator's, not a team's.
    #[arg(
        long,
        env = "APPATTACH_MANAGED_IDENTITY_NAMESPACES",
        value_delimiter = ','
    )]
    pub managed_identity_namespaces: Vec<String>,

    /// Watch this namespace only (all namespaces when absent).
    #[arg(long)]
    pub namespace: Option<String>,

    /// How often a package is compared with the backend to correct drift (jitter added).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub resync: Duration,

    /// How often the controller's picture of the backend is read again with list calls
    /// (every pass reads the picture, not the backend). Drift found then is corrected at
    /// once; writes wait when the picture is older than three periods.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub backend_refresh: Duration,

    /// The ConfigMap, NAMESPACE/NAME, that declares the roots the session hosts trust
    /// (PEM certificates in its data): a package whose spec.certificate.root is not among
    /// them is not Ready (CertificateUntrusted). Not checked when absent.
    #[arg(long, env = "APPATTACH_TRUSTED_ROOTS", value_parser = namespaced_name)]
    pub trusted_roots: Option<(String, String)>,

    /// Serve Prometheus metrics at /metrics and the probes /livez and /readyz on this
    /// address (for example 0.0.0.0:8080).
    #[arg(long)]
    pub metrics_bind_address: Option<SocketAddr>,

    /// How often a running rollout checks its gate and counts sessions on old images.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub rollout_poll: Duration,

    /// Packages reconciled at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,

    /// The in-process emulator's world file.
    #[arg(long, default_value = "examples/world.yaml")]
    pub world: PathBuf,

    /// The in-process emulator's share mappings, `\\server\share=/dir`; repeatable.
    #[arg(long = "share", value_name = "UNC=DIR")]
    pub shares: Vec<ShareMapping>,

    /// Where the in-process emulator keeps its state (in memory when absent).
    #[arg(long)]
    pub state: Option<PathBuf>,

    /// Where the in-process emulator listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub emulator_listen: SocketAddr,

    /// The in-process emulator enforces ARM's request budget per caller (reads 250 at once
    /// then 25 a second, writes and deletes 200 then 10), answering 429 with Retry-After
    /// beyond it, as Azure does. The controller's own budget is set apart, with
    /// --arm-read-limit, --arm-write-limit and --arm-delete-limit.
    #[arg(long, conflicts_with_all = ["arm_endpoint", "cloud"])]
    pub arm_budget: bool,

    /// Lead through a Lease before reconciling, so that of several replicas only one writes.
    /// A replica that loses the Lease exits; SIGTERM releases it for the next at once.
    #[arg(long, env = "APPATTACH_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease (the pod's own, in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "appattach-system")]
    pub leader_election_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "appattach-controller")]
    pub leader_election_lease: String,

    /// How long a Lease holds without renewal, in seconds; a replica that dies without
    /// releasing it is replaced after this long.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub leader_election_duration: u64,

    /// On SIGTERM, how long passes in flight may take to finish before they are abandoned
    /// (an abandoned pass resumes from the intent it recorded). Keep it under the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// This replica's name in the Lease (the pod name in a cluster; host and process id
    /// otherwise).
    #[arg(long, env = "POD_NAME")]
    pub leader_election_identity: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // The backend first: a credential that does not work stops the start, naming why.
    let (mut backend, _emulator) = backend(&args).await?;
    if let Some(limits) = limits(&args) {
        backend = backend.with_limits(limits);
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (set KUBECONFIG, or run in a cluster)")?;
    let config = Config {
        namespace: args.namespace.clone(),
        resync: args.resync,
        concurrency: args.concurrency,
        rollout_poll: args.rollout_poll,
        metrics: std::sync::Arc::new(crate::controller::metrics::Metrics::new(Some(
            backend.metrics(),
        ))),
        backend_refresh: args.backend_refresh,
        trusted_roots: args.trusted_roots.clone(),
    };
    if let Some(addr) = args.metrics_bind_address {
        serve_metrics(addr, config.metrics.clone()).await?;
    }
    let identity = args.leader_elect.then(|| identity(&args));
    if let Some(i) = &identity {
        backend = backend.with_instance(i);
    }
    let backends = controller::Backends {
        targets: targets(&args, &backend, identity.clone()),
        default: (!args.require_backend_target).then_some(backend),
    };
    if let Some(identity) = identity {
        return lead_then_run(&args, &identity, client, backends, config).await;
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tokio::select! {
        () = wait_for_kinds(&client, &config) => {}
        () = &mut shutdown => return Ok(()),
    }
    drain(client, backends, config, shutdown, args.shutdown_timeout).await;
    Ok(())
}

/// The client-side request budget: ARM's published limits on Azure (one token of
/// slack); elsewhere none, unless a flag sets one.
fn limits(args: &Args) -> Option<crate::backend::throttle::Limits> {
    let arm = crate::backend::throttle::Limits::ARM_CLIENT;
    let on_azure = args.cloud.is_some();
    let given = [
        args.arm_read_limit,
        args.arm_write_limit,
        args.arm_delete_limit,
    ]
    .iter()
    .any(Option::is_some);
    let or_default = |flag: Option<(u32, f64)>, published: (u32, f64)| {
        flag.unwrap_or(if on_azure { published } else { (u32::MAX, 1e9) })
    };
    (on_azure || given).then(|| crate::backend::throttle::Limits {
        reads: or_default(args.arm_read_limit, arm.reads),
        writes: or_default(args.arm_write_limit, arm.writes),
        deletes: or_default(args.arm_delete_limit, arm.deletes),
    })
}

/// `--arm-endpoint-for SUBSCRIPTION=URL`.
fn parse_endpoint_for(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((sub, url)) if !sub.trim().is_empty() && url.starts_with("http") => {
            Ok((sub.trim().to_ascii_lowercase(), url.trim().to_string()))
        }
        _ => Err(format!(
            "{s:?}: give SUBSCRIPTION=URL, for example 00000000-0000-0000-0000-000000000001=http://127.0.0.1:7781"
        )),
    }
}

/// How the namespaces' BackendTargets are served: each gets a client of its own (its
/// subscription's endpoint, its identity), with the request budget of its principal in
/// its subscription shared among the targets that have both, and its requests counted
/// under its name. Not served with the in-process emulator (it has one backend only).
fn targets(
    args: &Args,
    operator: &ArmClient,
    instance: Option<String>,
) -> controller::targets::TargetSettings<ArmClient> {
    let mut settings = controller::targets::TargetSettings {
        require_target: args.require_backend_target,
        managed_identity_namespaces: args.managed_identity_namespaces.clone(),
        ..Default::default()
    };
    if args.cloud.is_none() && args.arm_endpoint.is_none() {
        return settings;
    }
    let cloud: crate::azure::Cloud = args
        .cloud
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(crate::azure::Cloud::Public);
    let mut endpoints = crate::azure::Endpoints::of(cloud, &crate::azure::process_env());
    endpoints.imds = args.imds_endpoint.clone();
    settings.endpoints = Some(endpoints);
    let base = args
        .arm_endpoint
        .clone()
        .unwrap_or_else(|| cloud.arm_endpoint().to_string());
    settings.make = Some(controller::targets::arm_clients(
        base,
        args.arm_endpoints_for.iter().cloned().collect(),
        limits(args),
        operator.metrics().clone(),
        instance,
    ));
    settings
}

/// This replica's name: `--leader-election-identity` (the pod name), else host and pid.
fn identity(args: &Args) -> String {
    args.leader_election_identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "appattach".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Runs the controller until `shutdown`, then gives the passes in flight `timeout` to
/// finish before abandoning them.
async fn drain(
    client: kube::Client,
    backend: controller::Backends<ArmClient>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    timeout: Duration,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = stop_rx.await;
    };
    let run = controller::run_until::<ArmClient>(client, backend, config, stop);
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => return,
        () = shutdown => {}
    }
    tracing::info!(
        timeout = ?timeout,
        "shutting down: no new passes; waiting for those in flight"
    );
    let _ = stop_tx.send(());
    if tokio::time::timeout(timeout, run).await.is_err() {
        tracing::warn!(
            "passes still in flight after {timeout:?} are abandoned; each resumes from the intent it recorded"
        );
    }
}

/// Waits for the Lease, reconciles while holding it, and releases it on SIGTERM. A replica
/// that loses it, or cannot confirm it in time, stops reconciling and exits before the
/// Lease could pass to another, so that only one replica writes.
async fn lead_then_run(
    args: &Args,
    identity: &str,
    client: kube::Client,
    backend: controller::Backends<ArmClient>,
    config: Config,
) -> anyhow::Result<()> {
    let ns = &args.leader_election_namespace;
    let lease = &args.leader_election_lease;
    let duration = args.leader_election_duration;
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), lease)
        .with_namespace(ns)
        .with_identity(identity)
        .with_duration(duration)
        // Renew halfway through: a renewal late by up to a quarter of the duration is
        // still confirmed before the watchdog below steps down.
        .with_grace(duration.div_ceil(2))
        .build()
        .await
        .with_context(|| {
            format!(
                "leader election: cannot use Lease {ns}/{lease}: the controller needs get, create and update on leases in namespace {ns} (--leader-election-namespace)"
            )
        })?;
    let (mut leading, task) = manager.watch().await;
    // A replica waiting to lead is ready once it can read the kinds it would reconcile.
    let standby = tokio::spawn({
        let (client, config) = (client.clone(), config.clone());
        async move {
            wait_for_kinds(&client, &config).await;
            config.metrics.set_synced();
        }
    });
    tracing::info!(%identity, lease = %format!("{ns}/{lease}"), "waiting to lead");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    while !*leading.borrow_and_update() {
        tokio::select! {
            changed = leading.changed() => changed.context("leader election stopped")?,
            () = &mut shutdown => {
                tracing::info!("shutting down before leading");
                drop(leading);
                release(task).await;
                return Ok(());
            }
        }
    }
    tracing::info!(%identity, "leading: reconciling");
    config.metrics.set_leader(true);
    // The kinds must be there before the controller's watches start.
    tokio::select! {
        _ = standby => {}
        () = &mut shutdown => {
            config.metrics.set_leader(false);
            drop(leading);
            release(task).await;
            return Ok(());
        }
    }
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), ns);
    let confirm = confirm_lease(leases, lease, identity, Duration::from_secs(duration));
    let outcome = tokio::select! {
        () = drain(client, backend, config.clone(), shutdown, args.shutdown_timeout) => Ok(()),
        () = lost(&mut leading) => Err(anyhow::anyhow!(
            "lost the Lease {ns}/{lease} to another replica: exiting, so that only the leader writes"
        )),
        e = confirm => Err(e),
    };
    config.metrics.set_leader(false);
    match outcome {
        Ok(()) => {
            drop(leading);
            release(task).await;
            Ok(())
        }
        // Not ours any more, or the API server is out of reach: nothing to release.
        Err(e) => {
            task.abort();
            Err(e)
        }
    }
}

/// Releases the Lease (the lease manager does so when its channel closes), giving up
/// after a few seconds if the API server does not answer: the Lease then expires.
async fn release(
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) {
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the Lease"),
        Ok(Ok(Err(e))) => tracing::warn!("releasing the Lease: {e}"),
        Ok(Err(e)) => tracing::warn!("releasing the Lease: {e}"),
        Err(_) => tracing::warn!("releasing the Lease: no answer within 5s; it will expire"),
    }
}

/// Watches this replica's own Lease while it leads, and resolves (with why) once it may
/// no longer be the leader: another holds the Lease, it is gone, or no renewal has been
/// seen for three quarters of the duration. The last is the partition case: a replica
/// that cannot reach the API server cannot renew, and another may take the Lease once the
/// duration has passed since the last renewal; this steps down before that.
async fn confirm_lease(
    leases: kube::Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
) -> anyhow::Error {
    let poll = duration / 20;
    let deadline = duration.mul_f64(0.75);
    let mut renewed = None;
    let mut seen = tokio::time::Instant::now();
    let mut last_error = String::from("none");
    loop {
        tokio::time::sleep(poll).await;
        match leases.get_opt(name).await {
            Ok(Some(l)) => {
                let spec = l.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(identity) {
                    return anyhow::anyhow!(
                        "the Lease {}/{name} is held by {} now: exiting, so that only the leader writes",
                        leases.namespace().unwrap_or_default(),
                        spec.holder_identity.as_deref().unwrap_or("nobody")
                    );
                }
                if spec.renew_time != renewed {
                    renewed = spec.renew_time;
                    seen = tokio::time::Instant::now();
                }
            }
            Ok(None) => {
                return anyhow::anyhow!(
                    "the Lease {name} was deleted: exiting, so that only the leader writes"
                );
            }
            Err(e) => last_error = e.to_string(),
        }
        if seen.elapsed() > deadline {
            return anyhow::anyhow!(
                "could not confirm the Lease {name} for {:?} (last error: {last_error}): stepping down before it can pass to another replica, so that two never write at once",
                seen.elapsed()
            );
        }
    }
}

/// Resolves when leadership is gone (or leader election stopped).
async fn lost(leading: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow() {
            return;
        }
    }
}

/// SIGTERM (as Kubernetes stops a pod) or Ctrl-C.
pub(super) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Waits until each kind can be listed, saying why not (on /readyz, and in the log when
/// the reason changes or a minute has passed): the CRDs are not installed, the
/// controller's identity may not list them, or the API server is out of reach.
async fn wait_for_kinds(client: &kube::Client, config: &Config) {
    use crate::resources::{AppAttachPackage, BackendTarget, HostPoolAssignment, UserAssignment};
    use kube::api::{Api, ListParams};
    fn api<K>(client: &kube::Client, ns: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let one = ListParams::default().limit(1);
    let packages = api::<AppAttachPackage>(client, &config.namespace);
    let pools = api::<HostPoolAssignment>(client, &config.namespace);
    let users = api::<UserAssignment>(client, &config.namespace);
    let targets = api::<BackendTarget>(client, &config.namespace);
    let mut said: Option<(String, tokio::time::Instant)> = None;
    loop {
        let listed = tokio::try_join!(
            packages.list_metadata(&one),
            pools.list_metadata(&one),
            users.list_metadata(&one),
            targets.list_metadata(&one),
        );
        let why = match listed {
            Ok(_) => {
                config.metrics.set_not_ready(None);
                return;
            }
            Err(e) => why_not_listed(&e, config.namespace.as_deref()),
        };
        config.metrics.set_not_ready(Some(why.clone()));
        let repeat = match &said {
            Some((last, at)) => *last != why || at.elapsed() >= Duration::from_secs(60),
            None => true,
        };
        if repeat {
            tracing::warn!("not ready: {why}");
            said = Some((why, tokio::time::Instant::now()));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// What a failed list of the kinds means, and what to do about it.
fn why_not_listed(e: &kube::Error, namespace: Option<&str>) -> String {
    let scope = namespace.map_or_else(
        || "cluster-wide".to_string(),
        |n| format!("in namespace {n}"),
    );
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            format!(
                "the appattach.io CRDs are not installed: {} (or -k deploy/)",
                crate::resources::INSTALL_CRDS
            )
        }
        kube::Error::Api(s) if s.code == 403 => format!(
            "forbidden to list the appattach.io kinds {scope} ({}): grant list and watch on appattachpackages, hostpoolassignments, userassignments and backendtargets (deploy/base/rbac.yaml)",
            s.message
        ),
        kube::Error::Api(s) if s.code == 401 => format!(
            "the API server refused the controller's credentials ({}): check the kubeconfig or the service account token",
            s.message
        ),
        other => format!("cannot reach the API server: {other}"),
    }
}

/// The backend the flags describe, and the in-process emulator when there is one.
pub async fn backend(args: &Args) -> anyhow::Result<(ArmClient, Option<emulator::Served>)> {
    let auth = match &args.arm_token {
        Some(t) => Auth::Bearer(t.clone()),
        None => Auth::None,
    };
    if let Some(cloud) = &args.cloud {
        let cloud: crate::azure::Cloud = cloud.parse().map_err(anyhow::Error::msg)?;
        let env = crate::azure::process_env();
        let mut endpoints = crate::azure::Endpoints::of(cloud, &env);
        endpoints.imds = args.imds_endpoint.clone();
        let endpoint = args
            .arm_endpoint
            .clone()
            .unwrap_or_else(|| cloud.arm_endpoint().to_string());
        let auth = match auth {
            // Every package goes to its namespace's target: the operator's own identity is
            // not used, and need not exist.
            Auth::None if args.require_backend_target => Auth::None,
            Auth::None => {
                if args.subscription.is_none() || args.resource_group.is_none() {
                    anyhow::bail!(
                        "--cloud needs --subscription and --resource-group (the operator's own target), unless --require-backend-target sends every package to its namespace's BackendTarget"
                    );
                }
                let method = crate::azure::Method::from_env(&args.azure_credential, &env)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let credential = crate::azure::Credential::new(method, endpoints);
                // Fail at start, with the reason, rather than on every reconcile.
                credential
                    .token()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                tracing::info!(method = ?credential.method(), "signed in to Azure");
                Auth::Credential(credential)
            }
            given => given,
        };
        let sub = args.subscription.as_deref().unwrap_or_default();
        let rg = args.resource_group.as_deref().unwrap_or_default();
        return Ok((ArmClient::new(&endpoint, sub, rg, auth), None));
    }
    if let Some(endpoint) = &args.arm_endpoint {
        let sub = args.subscription.as_deref().unwrap_or_default();
        let rg = args.resource_group.as_deref().unwrap_or_default();
        return Ok((ArmClient::new(endpoint, sub, rg, auth), None));
    }
    let world = World::load(&args.world)?;
    let config = emulator::Config {
        world: Some(world.clone()),
        shares: args.shares.clone(),
        state_dir: args.state.clone(),
        token: None,
        staging_interval: Some(Duration::from_secs(10)),
        arm_budget: args.arm_budget.then_some(emulator::Budget::ARM),
    };
    let served = Emulator::new(config)?
        .serve(args.emulator_listen, Some(Duration::from_secs(10)))
        .await?;
    eprintln!("appattach: embedded emulator at {}", served.url());
    let client = ArmClient::new(
        &served.url(),
        &world.subscription,
        &world.resource_group,
        Auth::None,
    );
    Ok((client, Some(served)))
}

/// Serves `/metrics` in the background.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: std::sync::Arc<crate::controller::metrics::Metrics>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-bind-address {addr}: cannot listen"))?;
    let ready = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        // Alive while the process serves; ready once the first full sync is done.
        .route("/livez", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = ready.clone();
                async move {
                    if ready.is_synced() {
                        (axum::http::StatusCode::OK, "ok\n".to_string())
                    } else {
                        let why = ready.not_ready().unwrap_or_else(|| {
                            "the first sync of the watched kinds is not done".into()
                        });
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        )
                    }
                }
            }),
        );
    tracing::info!(%addr, "serving /metrics, /livez and /readyz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}

/// `NAMESPACE/NAME`.
fn namespaced_name(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "{s:?} is not NAMESPACE/NAME (for example appattach-system/appattach-trusted-roots)"
        )),
    }
}
