//! `appattach validate` and `appattach plan`: the checks a pull request runs before merge.
//! Both read manifests and, read only, a world: the emulator, a world file (an in-process
//! emulator loaded with it, on loopback), or Azure. Neither writes anywhere.

use std::path::PathBuf;

use anyhow::Context;

use super::azure_args::AzureArgs;
use crate::backend::{ArmClient, Auth};
use crate::controller::validate::Severity;
use crate::emulator::admin::DirectoryView;
use crate::emulator::{self, Emulator, Served, World};
use crate::gitops::manifest::{self, Document};
use crate::gitops::plan::{self, Access, Plan, Status};
use crate::gitops::validate::{self, Report};

/// The manifests, and what to check them against.
#[derive(clap::Args, Debug)]
pub struct Sources {
    /// Manifests: a file, a folder (its .yaml, .yml and .json files, recursively) or `-` for
    /// standard input, e.g. `kubectl kustomize overlays/prod | appattach validate -f -`.
    /// Repeat for more.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Namespace of the objects that name none, as `kubectl apply -n` gives it.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// What to check against, read only: `emulator URL`, `world FILE` (a world file, as
    /// `appattach emulator --world` loads it) or `azure` (with --subscription,
    /// --resource-group and the sign-in of `appattach controller`).
    #[arg(long, num_args = 1..=2, value_names = ["KIND", "WHERE"])]
    against: Vec<String>,
    #[command(flatten)]
    azure: AzureArgs,
}

/// Arguments of `appattach validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    sources: Sources,
    /// The manifests as they stand before the change (the target branch of a pull
    /// request), for the rules on changes: a new image needs a new version, identities and
    /// package references never change. Repeat for more.
    #[arg(long)]
    base: Vec<String>,
}

/// Arguments of `appattach plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    sources: Sources,
    /// `text` (for people), `markdown` (for a pull-request comment) or `json` (for bots).
    #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "markdown", "json"])]
    output: String,
    /// Exit 2 when the plan has changes (0: none, 1: errors), as `terraform plan
    /// -detailed-exitcode` does.
    #[arg(long)]
    detailed_exitcode: bool,
}

/// What the manifests are checked against.
struct Target {
    client: ArmClient,
    /// Who is who, when known: groups are expanded to their members.
    directory: Option<World>,
    label: String,
    /// The in-process emulator of a world file, kept until the end.
    _served: Option<Served>,
}

async fn connect(sources: &Sources, default_emulator: bool) -> anyhow::Result<Option<Target>> {
    let words: Vec<&str> = sources.against.iter().map(String::as_str).collect();
    let (kind, place) = match words.as_slice() {
        [] if default_emulator => (
            "emulator",
            std::env::var("APPATTACH_EMULATOR").unwrap_or_else(|_| "http://127.0.0.1:7780".into()),
        ),
        [] => return Ok(None),
        [one] => match one.split_once('=') {
            Some((k, v)) => (k, v.to_string()),
            None => (*one, String::new()),
        },
        [k, v] => (*k, v.to_string()),
        _ => ("", String::new()), // clap takes one or two: refused below all the same
    };
    let token = sources
        .azure
        .arm_token
        .clone()
        .map(Auth::Bearer)
        .unwrap_or(Auth::None);
    match (kind, place.as_str()) {
        ("emulator", url) if !url.is_empty() => {
            let base = reqwest::Url::parse(url)
                .with_context(|| format!("--against emulator {url}: not a URL"))?;
            let answer = reqwest::get(base.join("/_emulator/directory")?)
                .await
                .with_context(|| format!("--against emulator {url}: cannot reach the emulator (is `appattach emulator` or `appattach local` running?)"))?;
            if !answer.status().is_success() {
                anyhow::bail!(
                    "--against emulator {url}: {} answered {}: is it an appattach emulator?",
                    base,
                    answer.status()
                );
            }
            let view: DirectoryView = answer
                .json()
                .await
                .context("reading the emulator's directory")?;
            let subscription = sources
                .azure
                .subscription
                .clone()
                .unwrap_or(view.subscription);
            let rg = sources
                .azure
                .resource_group
                .clone()
                .unwrap_or(view.resource_group);
            Ok(Some(Target {
                client: ArmClient::new(url, &subscription, &rg, token),
                directory: Some(World::of_directory(view.directory)),
                label: format!("emulator {url}"),
                _served: None,
            }))
        }
        ("world", file) if !file.is_empty() => {
            let world = World::load(&PathBuf::from(file))
                .with_context(|| format!("--against world {file}"))?;
            let directory = world.clone();
            let (subscription, rg) = (world.subscription.clone(), world.resource_group.clone());
            let served = Emulator::start(emulator::Config {
                world: Some(world),
                ..Default::default()
            })
            .await
            .context("starting an in-process emulator for the world file")?;
            Ok(Some(Target {
                client: ArmClient::new(&served.url(), &subscription, &rg, Auth::None),
                directory: Some(directory),
                label: format!("world {file} (nothing deployed yet)"),
                _served: Some(served),
            }))
        }
        ("azure", "") => {
            let client = sources.azure.client(None, Some("AzurePublicCloud"))?;
            let label = format!(
                "Azure, resource group {} (read only)",
                client.resource_group()
            );
            Ok(Some(Target {
                client,
                directory: None,
                label,
                _served: None,
            }))
        }
        _ => anyhow::bail!(
            "--against {}: expected `emulator URL`, `world FILE` or `azure`",
            words.join(" ")
        ),
    }
}

async fn check(
    sources: &Sources,
    base: &[String],
    target: Option<&Target>,
) -> anyhow::Result<Report> {
    let (docs, errors) = manifest::read_sources(&sources.files);
    let base: Vec<Document> = if base.is_empty() {
        Vec::new()
    } else {
        let (docs, errors) = manifest::read_sources(base);
        if let Some(e) = errors.first() {
            anyhow::bail!("--base {}:{}: {}", e.file, e.line, e.message);
        }
        docs
    };
    let report = validate::validate(
        docs,
        errors,
        &sources.namespace,
        &base,
        target.map(|t| &t.client),
        jiff::Timestamp::now(),
    )
    .await
    .context("reading the backend")?;
    Ok(report)
}

fn summary(report: &Report) -> String {
    let count = |severity: Severity| {
        report
            .problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    };
    let (errors, warnings, notes) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    let objects = report.objects.packages.len()
        + report.objects.host_pool_assignments.len()
        + report.objects.user_assignments.len()
        + report.objects.backend_targets.len();
    format!(
        "{} document(s), {objects} appattach.io object(s) accepted, {} skipped (not appattach.io): {errors} error(s), {warnings} warning(s){}",
        report.documents,
        report.skipped.len(),
        if notes > 0 {
            format!(", {notes} note(s) of what could not be checked")
        } else {
            String::new()
        }
    )
}

/// `appattach validate`: one line per problem on stdout, a summary on stderr; exit 1
/// when anything would be refused or not reconciled.
pub async fn validate(args: ValidateArgs) -> anyhow::Result<std::process::ExitCode> {
    let target = connect(&args.sources, false).await?;
    let report = check(&args.sources, &args.base, target.as_ref()).await?;
    for p in &report.problems {
        super::out(&format!("{p}\n"))?;
    }
    for s in &report.skipped {
        eprintln!("{}:{}: skipped: {}", s.file, s.line, s.what);
    }
    let against = target.as_ref().map_or_else(
        || {
            "no world: host pools, regions and principals were not checked (give --against)"
                .to_string()
        },
        |t| format!("checked against {}", t.label),
    );
    eprintln!("appattach validate: {}; {against}", summary(&report));
    Ok(if report.has_errors() {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// `appattach plan`: the plan on stdout in the format asked (nothing else: `-o json` is
/// read by programs); the problems on stderr, before it.
pub async fn plan(args: PlanArgs) -> anyhow::Result<std::process::ExitCode> {
    let target = connect(&args.sources, true)
        .await?
        .expect("plan always has a target");
    let report = check(&args.sources, &[], Some(&target)).await?;
    for p in &report.problems {
        eprintln!("{p}");
    }
    let picture = report.picture.clone().unwrap_or_default();
    let plan = plan::plan(
        &picture,
        &target.label,
        &report.objects,
        &report.packages,
        target.directory.as_ref(),
    );
    match args.output.as_str() {
        "json" => super::out(&format!("{}\n", serde_json::to_string_pretty(&plan)?))?,
        "markdown" => super::out(&markdown(&plan))?,
        _ => super::out(&text(&plan))?,
    }
    eprintln!("appattach plan: {}", summary(&report));
    Ok(if report.has_errors() || plan.has_errors() {
        std::process::ExitCode::FAILURE
    } else if args.detailed_exitcode && !plan.is_empty() {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn sign(action: &str) -> &'static str {
    match action {
        "create" => "+",
        "delete" => "-",
        _ => "~",
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Create => "create",
        Status::Update => "update",
        Status::Rollout => "rollout",
        Status::NoChange => "no change",
        Status::NotReconciled => "NOT RECONCILED",
        Status::NotWritten => "not written",
    }
}

/// Counts for the closing line.
fn tally(plan: &Plan) -> String {
    let count = |s: Status| plan.packages.iter().filter(|p| p.status == s).count();
    let change = |c: Access| plan.entitlements.iter().filter(|e| e.change == c).count();
    format!(
        "{} to create, {} to update, {} rollout(s), {} to remove, {} not reconciled; {} {} gain, {} lose, {} change version",
        count(Status::Create),
        count(Status::Update),
        count(Status::Rollout),
        plan.removals.len(),
        count(Status::NotReconciled),
        plan.entitlements_of,
        change(Access::Gains),
        change(Access::Loses),
        change(Access::Changes),
    )
}

fn entitlement_line(e: &plan::EntitlementChange) -> String {
    let (from, to) = (
        e.from_version.as_deref().unwrap_or_default(),
        e.to_version.as_deref().unwrap_or_default(),
    );
    let (who, app, pool) = (&e.who, &e.package, &e.host_pool);
    match e.change {
        Access::Gains => format!("{who} gains {app} {to} on {pool}"),
        Access::Loses => format!("{who} loses {app} {from} on {pool}"),
        Access::Changes => format!("{who} gets {app} {to} instead of {from} on {pool}"),
    }
}

/// The plan for people, like `terraform plan`.
pub fn text(plan: &Plan) -> String {
    let mut out = format!("appattach plan against {}\n", plan.against);
    if plan.is_empty() && !plan.has_errors() {
        out.push_str("\nNo changes: the backend matches the manifests.\n");
        return out;
    }
    for p in &plan.packages {
        if p.status == Status::NoChange {
            continue;
        }
        out.push_str(&format!(
            "\nAppAttachPackage {} ({}): {}\n",
            p.object,
            p.source,
            status_word(p.status)
        ));
        if let Some(r) = &p.reason {
            out.push_str(&format!("  {r}\n"));
        }
        for c in &p.changes {
            out.push_str(&format!(
                "  {} {} {}: {}\n",
                sign(&c.action),
                c.action,
                c.resource,
                c.detail
            ));
        }
        if let Some(r) = &p.rollout {
            out.push_str(&format!("  rollout {} -> {}\n", r.from, r.to));
            for ring in &r.rings {
                out.push_str(&format!(
                    "    ring {}: {}\n",
                    ring.ring,
                    ring.host_pools.join(", ")
                ));
            }
            out.push_str(&format!("    gate: {}\n", r.gate));
        }
    }
    for r in &plan.removals {
        out.push_str(&format!(
            "\n{} (gone from the manifests): remove\n  - delete appAttachPackages/{}: version {} and its {} role assignment(s), once the object is deleted from the cluster\n",
            r.object, r.backend_name, r.version, r.role_assignments
        ));
    }
    if !plan.entitlements.is_empty() {
        out.push_str(&format!("\nWho gets what ({}):\n", plan.entitlements_of));
        for e in &plan.entitlements {
            out.push_str(&format!("  {} {}\n", e.change.sign(), entitlement_line(e)));
        }
    }
    out.push_str(&format!("\nPlan: {}.\n", tally(plan)));
    out
}

/// The plan as a pull-request comment.
pub fn markdown(plan: &Plan) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("### appattach plan\n\nAgainst {}.\n\n", cell(&plan.against));
    if plan.is_empty() && !plan.has_errors() {
        out.push_str("**No changes**: the backend matches the manifests.\n");
        return out;
    }
    out.push_str(&format!("**Plan:** {}.\n\n", tally(plan)));
    let changed: Vec<_> = plan
        .packages
        .iter()
        .filter(|p| p.status != Status::NoChange)
        .collect();
    if !changed.is_empty() || !plan.removals.is_empty() {
        out.push_str("| package | what | backend writes |\n| --- | --- | --- |\n");
        for p in changed {
            let mut what = status_word(p.status).to_string();
            if let Some(r) = &p.rollout {
                what = format!(
                    "rollout {} → {}: {}",
                    r.from,
                    r.to,
                    r.rings
                        .iter()
                        .map(|g| format!("ring {} ({})", g.ring, g.host_pools.join(", ")))
                        .collect::<Vec<_>>()
                        .join(", then ")
                );
            }
            if let Some(r) = &p.reason {
                what = format!("{what}: {r}");
            }
            let writes = p
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "`{}` {} {}: {}",
                        sign(&c.action),
                        c.action,
                        c.resource,
                        c.detail
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>");
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                p.object,
                cell(&what),
                cell(&writes)
            ));
        }
        for r in &plan.removals {
            out.push_str(&format!(
                "| `{}` | remove (gone from the manifests) | `-` delete appAttachPackages/{} ({}, {} role assignment(s)) |\n",
                r.object, r.backend_name, r.version, r.role_assignments
            ));
        }
    }
    if !plan.entitlements.is_empty() {
        out.push_str(&format!(
            "\n<details><summary>Who gets what: {} change(s) ({})</summary>\n\n| | {} | host pool | app | version |\n| --- | --- | --- | --- | --- |\n",
            plan.entitlements.len(),
            plan.entitlements_of,
            if plan.entitlements_of == "users" { "user" } else { "principal" }
        ));
        for e in &plan.entitlements {
            let version = match (&e.from_version, &e.to_version) {
                (Some(a), Some(b)) => format!("{a} → {b}"),
                (None, Some(b)) => b.clone(),
                (Some(a), None) => a.clone(),
                (None, None) => String::new(),
            };
            out.push_str(&format!(
                "| {} {} | {} | {} | {} | {} |\n",
                e.change.sign(),
                e.change.word(),
                cell(&e.who),
                cell(&e.host_pool),
                cell(&e.package),
                version
            ));
        }
        out.push_str("\n</details>\n");
    }
    out
}
