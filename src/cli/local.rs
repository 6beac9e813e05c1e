//! `appattach local`: the README's main job. A local control plane, the CRDs, the embedded
//! emulator, the controller, and the examples, until Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::{Api, ResourceExt};

use crate::backend::{ArmClient, Auth};
use crate::controller;
use crate::controlplane::{Binaries, ControlPlane};
use crate::emulator::{self, Emulator, ShareMapping, World};

/// Arguments of `appattach local`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of manifests to apply with `kubectl apply --server-side -k` (it holds a
    /// kustomization.yaml).
    #[arg(long, default_value = "examples")]
    examples: PathBuf,

    /// The emulator's world file.
    #[arg(long, default_value = "examples/world.yaml")]
    world: PathBuf,

    /// The emulator's share mappings (default: the examples' images).
    #[arg(
        long = "share",
        value_name = "UNC=DIR",
        default_value = r"\\fs.contoso.com\appattach=examples/share"
    )]
    shares: Vec<ShareMapping>,

    /// Directory holding etcd, kube-apiserver and kubectl. Built from their Go modules
    /// (and cached) when absent.
    #[arg(long, env = "APPATTACH_CONTROLPLANE_BIN")]
    control_plane_bin: Option<PathBuf>,

    /// Set up everything, print it, and exit instead of waiting for Ctrl-C.
    #[arg(long)]
    once: bool,

    /// The emulator enforces ARM's request budget per caller (reads 250 at once then 25 a
    /// second, writes and deletes 200 then 10), answering 429 with Retry-After beyond it,
    /// as Azure does.
    #[arg(long)]
    arm_budget: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let world = World::load(&args.world)?;
    let binaries = match args.control_plane_bin {
        Some(dir) => Binaries::from_dir(dir)?,
        None => {
            eprintln!("appattach: building (or reusing) the control-plane binaries...");
            Binaries::build()?
        }
    };
    eprintln!("appattach: starting etcd and kube-apiserver...");
    let cp = ControlPlane::start(&binaries).await?;
    eprintln!("appattach: control plane ready at {}", cp.server_url());
    eprintln!("appattach: installing the CRDs...");
    cp.install_crds(&crate::resources::crds_yaml()?)?;

    let state = tempfile::Builder::new()
        .prefix("appattach-emulator-")
        .tempdir()?;
    let config = emulator::Config {
        world: Some(world.clone()),
        shares: args.shares.clone(),
        state_dir: Some(state.path().to_path_buf()),
        token: None,
        staging_interval: Some(Duration::from_secs(2)),
        arm_budget: args.arm_budget.then_some(emulator::Budget::ARM),
    };
    let emulator = Emulator::start(config).await?;
    eprintln!(
        "appattach: management-backend emulator at {}",
        emulator.url()
    );

    let backend = ArmClient::new(
        &emulator.url(),
        &world.subscription,
        &world.resource_group,
        Auth::None,
    );
    let client = cp.client().await?;
    let controller = tokio::spawn(controller::run(
        client.clone(),
        backend,
        controller::Config {
            rollout_poll: Duration::from_secs(2),
            ..controller::Config::default()
        },
    ));
    eprintln!("appattach: controller running");

    eprintln!("appattach: applying {}...", args.examples.display());
    let applied = cp
        .kubectl_output(&[
            "apply",
            "--server-side",
            "-k",
            &args.examples.to_string_lossy(),
        ])
        .with_context(|| format!("applying {}", args.examples.display()))?;
    eprint!("{applied}");

    wait_until_ready(&client).await?;
    let counts: crate::emulator::faults::CountsView =
        reqwest::get(format!("{}/_emulator/requests", emulator.url()))
            .await?
            .error_for_status()?
            .json()
            .await?;
    let by_method: Vec<String> = counts
        .by_method
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    eprintln!(
        "appattach: backend requests until everything was Ready: {} ({})",
        counts.total,
        by_method.join(", ")
    );
    if args.arm_budget {
        let r = counts.budget_refused;
        eprintln!(
            "appattach: refused by ARM's budget: {} reads, {} writes, {} deletes",
            r.reads, r.writes, r.deletes
        );
    }
    println!("{}", cp.kubectl_output(&["get", "appattach", "-A"])?);
    for user in &world.directory.users {
        let view = entitlements(&emulator.url(), &user.upn).await?;
        println!("{}", super::entitlements::table(&view));
    }
    let bin = plugin_dir(&binaries)?;
    println!(
        "The local control plane is up. In another terminal:\n\n    export KUBECONFIG={}\n    export PATH={}:$PATH    # kubectl, and this binary as the kubectl-appattach plugin\n    kubectl get appattach -A\n    kubectl appattach rollout status contoso-expenses -n avd-apps\n    cargo run -- entitlements --emulator {} --user carol@contoso.com\n",
        cp.kubeconfig().display(),
        bin.display(),
        emulator.url()
    );
    if !args.once {
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    eprintln!("appattach: stopping");
    controller.abort();
    emulator.shutdown().await;
    drop(cp);
    Ok(())
}

/// Waits until every package and every assignment reports Ready=True (an assignment is
/// Ready only once a pass of its package has taken it in), printing progress; fails after
/// two minutes naming what is not Ready and why.
async fn wait_until_ready(client: &kube::Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        let mut pending = Vec::new();
        let mut packages = 0;
        for kind in ["AppAttachPackage", "HostPoolAssignment", "UserAssignment"] {
            let resource = crate::resources::api_resource(kind);
            let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
            for obj in api.list(&Default::default()).await?.items {
                if kind == "AppAttachPackage" {
                    packages += 1;
                }
                let ready = obj.data["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .cloned();
                let id = format!(
                    "{kind} {}/{}",
                    obj.namespace().unwrap_or_default(),
                    obj.name_any()
                );
                match ready {
                    Some(c) if c["status"] == "True" => {}
                    Some(c) => pending.push(format!(
                        "{id}: {} ({})",
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )),
                    None => pending.push(format!("{id}: not reconciled yet")),
                }
            }
        }
        if pending.is_empty() {
            eprintln!("appattach: all {packages} packages and their assignments are Ready");
            return Ok(());
        }
        let now = pending.join("\n  ");
        if now != last {
            eprintln!(
                "appattach: waiting for {} object(s):\n  {now}",
                pending.len()
            );
            last = now;
        }
        if Instant::now() > deadline {
            anyhow::bail!("not Ready after two minutes:\n  {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn entitlements(
    url: &str,
    user: &str,
) -> anyhow::Result<crate::emulator::admin::EntitlementsView> {
    let mut u = reqwest::Url::parse(url)?.join("/_emulator/entitlements")?;
    u.query_pairs_mut().append_pair("user", user);
    Ok(reqwest::get(u).await?.error_for_status()?.json().await?)
}

/// A folder with `kubectl` (the one built for the control plane) and `kubectl-appattach`
/// (this binary), to put on PATH.
fn plugin_dir(binaries: &Binaries) -> anyhow::Result<std::path::PathBuf> {
    let dir = binaries.dir().join("path");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let links = [
        ("kubectl", binaries.kubectl()),
        ("kubectl-appattach", std::env::current_exe()?),
    ];
    for (name, target) in links {
        let link = dir.join(name);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        // Replaced atomically: another `local` may be using the link right now.
        let fresh = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        std::os::unix::fs::symlink(&target, &fresh)
            .and_then(|()| std::fs::rename(&fresh, &link))
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
    }
    Ok(dir)
}
