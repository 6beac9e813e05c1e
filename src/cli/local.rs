//! `appattach local`: the README's main job. A local control plane, the CRDs, the examples.

use std::path::PathBuf;

use anyhow::Context;

use crate::controlplane::{Binaries, ControlPlane};

/// Arguments of `appattach local`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of manifests to apply with `kubectl apply --server-side -k` (it holds a
    /// kustomization.yaml).
    #[arg(long, default_value = "examples")]
    examples: PathBuf,

    /// Directory holding etcd, kube-apiserver and kubectl. Built from their Go modules
    /// (and cached) when absent.
    #[arg(long, env = "APPATTACH_CONTROLPLANE_BIN")]
    control_plane_bin: Option<PathBuf>,

    /// Set up everything, print it, and exit instead of waiting for Ctrl-C.
    #[arg(long)]
    once: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
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

    let listing = cp.kubectl_output(&["get", "appattach", "-A"])?;
    println!("{listing}");
    println!(
        "The local control plane is up. In another terminal:\n\n    export KUBECONFIG={}\n    kubectl get appattach -A\n",
        cp.kubeconfig().display()
    );
    if args.once {
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    eprintln!("appattach: stopping the control plane...");
    drop(cp);
    Ok(())
}
