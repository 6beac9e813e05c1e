//! `appattach emulator`: the management backend alone, on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::budget::parse_limit;
use crate::emulator::{Budget, Config, Emulator, ShareMapping, World};

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

    /// Require `Authorization: Bearer TOKEN` on every ARM request (unless the world has a
    /// `tenantId`: then ARM requests need an Entra ID token of that tenant instead).
    #[arg(long, env = "APPATTACH_EMULATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// How often session hosts stage images on their own (`0s`: only on demand, through
    /// `POST /_emulator/stage`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    staging_interval: Duration,

    /// Enforce Azure Resource Manager's request budget: token buckets per caller (the
    /// bearer token's subject, else the User-Agent), reads 250 at once then 25 a second,
    /// writes (PUT, PATCH, POST) and deletes 200 then 10. Beyond it: 429 TooManyRequests
    /// with Retry-After; every answer says what is left in
    /// x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}.
    #[arg(long)]
    arm_budget: bool,

    /// The budget of reads, BURST/RATE (a second), instead of ARM's 250/25. Implies
    /// --arm-budget.
    #[arg(long, value_name = "BURST/RATE", value_parser = parse_limit)]
    arm_budget_reads: Option<(u32, f64)>,

    /// The budget of writes, BURST/RATE, instead of ARM's 200/10. Implies --arm-budget.
    #[arg(long, value_name = "BURST/RATE", value_parser = parse_limit)]
    arm_budget_writes: Option<(u32, f64)>,

    /// The budget of deletes, BURST/RATE, instead of ARM's 200/10. Implies --arm-budget.
    #[arg(long, value_name = "BURST/RATE", value_parser = parse_limit)]
    arm_budget_deletes: Option<(u32, f64)>,
}

impl Args {
    /// The request budget the flags ask for: ARM's, with the kinds given replaced.
    fn budget(&self) -> Option<Budget> {
        let given = [
            self.arm_budget_reads,
            self.arm_budget_writes,
            self.arm_budget_deletes,
        ];
        if !self.arm_budget && given.iter().all(Option::is_none) {
            return None;
        }
        let arm = Budget::ARM;
        Some(Budget {
            reads: self.arm_budget_reads.unwrap_or(arm.reads),
            writes: self.arm_budget_writes.unwrap_or(arm.writes),
            deletes: self.arm_budget_deletes.unwrap_or(arm.deletes),
        })
    }
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
    let budget = args.budget();
    let config = Config {
        world,
        shares: args.shares,
        state_dir: args.state,
        token: args.token,
        staging_interval: interval,
        arm_budget: budget,
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
    let (tenant, tenants) = {
        let inner = served.emulator.lock();
        let tenants: std::collections::BTreeSet<String> = inner
            .world
            .identities
            .iter()
            .map(|i| i.tenant_id.to_ascii_lowercase())
            .collect();
        (inner.world.tenant_id.clone(), tenants)
    };
    for t in &tenants {
        println!("  Entra:  {} (client credentials)", served.token_url(t));
    }
    if let Some(t) = tenant {
        println!("  auth:   ARM requests need a bearer token of tenant {t}");
    }
    if let Some(b) = budget {
        println!(
            "  budget: per caller, reads {}/{}, writes {}/{}, deletes {}/{} (burst/rate a second)",
            b.reads.0, b.reads.1, b.writes.0, b.writes.1, b.deletes.0, b.deletes.1
        );
    }
    tokio::signal::ctrl_c().await?;
    eprintln!("appattach: stopping the emulator");
    Ok(())
}
