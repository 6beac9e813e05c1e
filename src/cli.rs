//! The `appattach` command. Each subcommand lives in its own module under `cli/`.

mod azure_args;
mod bench;
mod controller;
mod crd;
mod emulator;
mod entitlements;
mod gitops;
mod image;
mod inspect;
mod json_log;
mod local;
mod migrate;
mod rollout;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Azure Virtual Desktop app attach, declared in Kubernetes.
///
/// Installed as `kubectl-appattach`, it also works as a kubectl plugin.
#[derive(Parser, Debug)]
#[command(name = "appattach", version, about, long_about = None)]
pub struct Cli {
    /// Log lines as `text` (for people) or `json` (one object a line, for log pipelines).
    /// The level comes from RUST_LOG (or APPATTACH_LOG), `info` by default.
    #[arg(
        long,
        global = true,
        env = "APPATTACH_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure the operator at scale against a local control plane and the emulator
    /// (cold start and its floor, requests, steady state, change latency, memory).
    Bench(bench::Args),
    /// Run the operator: reconcile the kinds into the management backend (an in-process
    /// emulator unless --arm-endpoint is given).
    Controller(Box<controller::Args>),
    /// Print the CustomResourceDefinitions of the three kinds as YAML.
    Crd(crd::Args),
    /// Run the management-backend emulator alone (ARM-compatible, on loopback).
    Emulator(emulator::Args),
    /// Show which packages a user gets at sign-in, per host pool, from a running emulator.
    Entitlements(entitlements::Args),
    /// Make app attach images on Linux: `appattach image create --package X.msix`.
    Image(image::Args),
    /// Read a package (.msix, .appx, bundles) or the packages in an image (.vhdx, .vhd)
    /// and print AppAttachPackage manifests ready to commit.
    Inspect(inspect::Args),
    /// Run a local control plane (etcd + kube-apiserver), install the CRDs, apply the
    /// examples, and stay up until Ctrl-C.
    Local(local::Args),
    /// Print manifests that move what exists in Azure to this operator (MSIX app attach
    /// packages of a host pool).
    Migrate(migrate::Args),
    /// What applying manifests would change in the backend and for which users, before
    /// merge, like `terraform plan`. Reads only.
    Plan(gitops::PlanArgs),
    /// Watch, pause, resume, undo and list the version rollouts of an AppAttachPackage,
    /// like `kubectl rollout`.
    Rollout(rollout::Args),
    /// Check manifests as the cluster would (CRD schema, CEL rules, the controller's own
    /// checks against a world), one line per problem. Reads only.
    Validate(gitops::ValidateArgs),
}

impl Cli {
    /// Runs the chosen subcommand and maps its outcome to an exit code.
    pub fn run(self) -> ExitCode {
        init_tracing(self.log_format);
        let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
        let result = match self.command {
            Command::Controller(args) => done(tokio_main(controller::run(*args))),
            Command::Crd(args) => done(crd::run(args)),
            Command::Emulator(args) => done(tokio_main(emulator::run(args))),
            Command::Entitlements(args) => done(tokio_main(entitlements::run(args))),
            Command::Image(args) => done(image::run(args)),
            Command::Inspect(args) => done(inspect::run(args)),
            Command::Local(args) => done(tokio_main(local::run(args))),
            Command::Bench(args) => done(tokio_main(bench::run(args))),
            Command::Rollout(args) => done(tokio_main(rollout::run(args))),
            Command::Migrate(args) => done(tokio_main(migrate::run(args))),
            // These say by their exit status whether the manifests are good.
            Command::Validate(args) => tokio_main(gitops::validate(args)),
            Command::Plan(args) => tokio_main(gitops::plan(args)),
        };
        result.unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        })
    }
}

/// Writes `text` to stdout. A reader that went away (`appattach plan ... | head`) ends
/// what is printed quietly, as it does for Unix tools, rather than in an error or a panic
/// (`println!` panics on a closed pipe: Rust ignores SIGPIPE).
pub(crate) fn out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn tokio_main<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("APPATTACH_LOG"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match format {
        // The fields of the spans a line is logged in (a pass's kind, namespace and name)
        // sit beside the line's own at the top level, as log pipelines index them.
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json_log::FlatJson)
            .try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Rows as a table of left-aligned columns three spaces apart, like kubectl prints.
pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
