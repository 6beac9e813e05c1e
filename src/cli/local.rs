//! `appattach local`: the README's main job. A local control plane, the CRDs, the embedded
//! emulator, the controller, and the examples, until Ctrl-C.

use std::path::{Path, PathBuf};
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
    let mut users = Vec::new();
    for user in &world.directory.users {
        let view = entitlements(&emulator.url(), &user.upn).await?;
        println!("{}", super::entitlements::table(&view));
        let gets_one = view.host_pools.iter().any(|p| !p.packages.is_empty());
        users.push((user.upn.clone(), gets_one));
    }
    let packages = applied_packages(&client).await?;
    let bin = plugin_dir(&binaries)?;
    println!(
        "{}",
        next_steps(
            cp.kubeconfig(),
            &bin,
            &emulator.url(),
            first_package(&packages),
            user_to_show(&users),
        )
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

/// The AppAttachPackages in the cluster, as (namespace, name) in the API server's order:
/// those the manifests applied, as the control plane is this run's own.
async fn applied_packages(client: &kube::Client) -> anyhow::Result<Vec<(String, String)>> {
    let resource = crate::resources::api_resource("AppAttachPackage");
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
        .collect())
}

/// The package a hint names: the first applied, as (namespace, name).
fn first_package(packages: &[(String, String)]) -> Option<(&str, &str)> {
    packages
        .first()
        .map(|(namespace, name)| (namespace.as_str(), name.as_str()))
}

/// The user a hint names, of the world's users (UPN, whether they get a package): the
/// first who gets one, else the first.
fn user_to_show(users: &[(String, bool)]) -> Option<&str> {
    users
        .iter()
        .find(|(_, gets_one)| *gets_one)
        .or(users.first())
        .map(|(upn, _)| upn.as_str())
}

/// What to run in another terminal against this run's control plane and emulator. The
/// hints that name a package (namespace, name) or a user are those of what was applied and
/// of the world; one that has nothing to name is left out.
fn next_steps(
    kubeconfig: &Path,
    path: &Path,
    emulator_url: &str,
    package: Option<(&str, &str)>,
    user: Option<&str>,
) -> String {
    let mut text = format!(
        "The local control plane is up. In another terminal:\n\n    export KUBECONFIG={}\n    export PATH={}:$PATH    # kubectl, and this binary as the kubectl-appattach plugin\n    kubectl get appattach -A\n",
        kubeconfig.display(),
        path.display(),
    );
    if let Some((namespace, name)) = package {
        text.push_str(&format!(
            "    kubectl appattach rollout status {name} -n {namespace}\n"
        ));
    }
    if let Some(upn) = user {
        text.push_str(&format!(
            "    cargo run -- entitlements --emulator {emulator_url} --user {upn}\n"
        ));
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(package: Option<(&str, &str)>, user: Option<&str>) -> String {
        next_steps(
            Path::new("/tmp/cp/kubeconfig"),
            Path::new("/cache/path"),
            "http://127.0.0.1:7780",
            package,
            user,
        )
    }

    #[test]
    fn the_hints_name_the_examples_package_and_user() {
        let text = hints(
            Some(("avd-apps", "contoso-expenses")),
            Some("carol@contoso.com"),
        );
        for line in [
            "export KUBECONFIG=/tmp/cp/kubeconfig",
            "export PATH=/cache/path:$PATH",
            "kubectl get appattach -A",
            "kubectl appattach rollout status contoso-expenses -n avd-apps",
            "entitlements --emulator http://127.0.0.1:7780 --user carol@contoso.com",
        ] {
            assert!(text.contains(line), "{line:?} not in {text}");
        }
    }

    #[test]
    fn the_hints_name_what_other_manifests_hold() {
        let text = hints(Some(("shop", "orders")), Some("dana@fabrikam.com"));
        assert!(
            text.contains("kubectl appattach rollout status orders -n shop"),
            "{text}"
        );
        assert!(text.contains("--user dana@fabrikam.com"), "{text}");
        assert!(!text.contains("contoso"), "{text}");
    }

    #[test]
    fn a_hint_that_cannot_be_derived_is_left_out() {
        let text = hints(None, None);
        assert!(text.contains("kubectl get appattach -A"), "{text}");
        assert!(!text.contains("rollout status"), "{text}");
        assert!(!text.contains("--user"), "{text}");
        assert!(!text.contains("contoso"), "{text}");
    }

    #[test]
    fn the_package_hinted_is_the_first_applied_and_the_user_one_who_gets_something() {
        let packages = vec![
            ("shop".to_string(), "orders".to_string()),
            ("avd-apps".to_string(), "billing".to_string()),
        ];
        assert_eq!(
            first_package(&packages),
            Some(("shop", "orders")),
            "the first in the API server's order"
        );
        assert_eq!(first_package(&[]), None);
        let users = [
            ("ann@fabrikam.com".to_string(), false),
            ("dana@fabrikam.com".to_string(), true),
        ];
        assert_eq!(user_to_show(&users), Some("dana@fabrikam.com"));
        assert_eq!(
            user_to_show(&users[..1]),
            Some("ann@fabrikam.com"),
            "a user who gets nothing still shows the command"
        );
        assert_eq!(user_to_show(&[]), None);
    }
}
