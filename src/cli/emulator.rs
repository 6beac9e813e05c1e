//! `appattach emulator`: the management backend alone, on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::emulator::{Config, Emulator, ShareMapping, World};

/// Arguments of `appattach emulator`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7780")]
    listen: SocketAddr,

    /// World file (YAML): host pools, session hosts, application groups, users and groups.
    /// Loaded into a fresh state; a state that already holds a world keeps it.
    #[arg(long)]
    world: Option<PathBuf>,

    /// Map a UNC share to a local directory, `\\server\share=/dir`; repeatable. Session
    /// hosts stage images through these.
    #[arg(long = "share", value_name = "UNC=DIR")]
    shares: Vec<ShareMapping>,

    /// Directory where state persists across restarts. In memory only when absent.
    #[arg(long)]
    state: Option<PathBuf>,

    /// Require `Authorization: Bearer TOKEN` on every ARM request.
    #[arg(long, env = "APPATTACH_EMULATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// How often session hosts stage images on their own (`0s`: only on demand, through
    /// `POST /_emulator/stage`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    staging_interval: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let world = match &args.world {
        Some(path) => Some(World::load(path)?),
        None => None,
    };
    if args.state.is_none() {
        eprintln!("appattach: no --state given: the emulator keeps its state in memory only");
    }
    let interval = Some(args.staging_interval).filter(|d| !d.is_zero());
    let config = Config {
        world,
        shares: args.shares,
        state_dir: args.state,
        token: args.token,
        staging_interval: interval,
    };
    let served = Emulator::new(config)?
        .serve(args.listen, interval)
        .await
        .context("starting the emulator")?;
    println!("appattach emulator listening on {}", served.url());
    println!(
        "  ARM:    {}/subscriptions/...?api-version=2024-04-03",
        served.url()
    );
    println!(
        "  admin:  {}/_emulator/ (signin, signout, entitlements, stage, faults, requests)",
        served.url()
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("appattach: stopping the emulator");
    Ok(())
}
