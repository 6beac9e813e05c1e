//! `appattach rollout status|pause|resume|undo|history NAME`: `kubectl rollout` for
//! AppAttachPackages. Installed as `kubectl-appattach`, it is `kubectl appattach rollout`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::table;
use crate::controller::planner::is_active;
use crate::resources::{AppAttachPackage, AppAttachPackageStatus, RolloutRecord};
use crate::resources::{RolloutPhase, RolloutResult};

/// Arguments of `appattach rollout`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,

    /// Namespace of the package; the kubeconfig context's namespace when absent.
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Show where a rollout stands, ring by ring. Exits 0 when it is complete, 1 when it
    /// failed or is held.
    Status {
        /// AppAttachPackage name.
        name: String,
        /// Keep watching until the rollout completes or fails.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Give up watching after this long (e.g. `30m`).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Hold the rollout between steps (sets spec.rollout.paused).
    Pause {
        /// AppAttachPackage name.
        name: String,
    },
    /// Let a paused rollout go on (clears spec.rollout.paused).
    Resume {
        /// AppAttachPackage name.
        name: String,
    },
    /// Go back to the previous version, as a new rollout (sets spec.package.version and
    /// spec.image.path).
    Undo {
        /// AppAttachPackage name.
        name: String,
        /// Go back to the version this revision rolled out, instead of the previous one.
        #[arg(long)]
        to_revision: Option<i64>,
    },
    /// List the rollouts of a package, newest first.
    History {
        /// AppAttachPackage name.
        name: String,
    },
}

/// The field manager of the CLI's writes.
const MANAGER: &str = "kubectl-appattach";

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (set KUBECONFIG, or run in a cluster)")?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<AppAttachPackage> = Api::namespaced(client, &ns);
    let get = |name: String| {
        let api = api.clone();
        let ns = ns.clone();
        async move {
            api.get(&name)
                .await
                .with_context(|| format!("reading appattachpackage/{name} in namespace {ns}"))
        }
    };
    match args.command {
        Command::Status {
            name,
            watch,
            timeout,
        } => {
            let deadline = Instant::now() + timeout;
            let mut last = String::new();
            loop {
                let pkg = get(name.clone()).await?;
                let text = render_status(&pkg);
                if text != last {
                    super::out(&text)?;
                    last = text;
                }
                match verdict(&pkg) {
                    Verdict::Complete => return Ok(()),
                    Verdict::Failed(why) => bail!("rollout of {name} failed: {why}"),
                    Verdict::InProgress if !watch => return Ok(()),
                    Verdict::InProgress if Instant::now() >= deadline => {
                        bail!("rollout of {name} still in progress after {timeout:?}")
                    }
                    Verdict::InProgress => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        }
        Command::Pause { name } => {
            set_paused(&api, &name, true).await?;
            super::out(&format!("appattachpackage/{name} paused\n"))?;
            Ok(())
        }
        Command::Resume { name } => {
            set_paused(&api, &name, false).await?;
            super::out(&format!("appattachpackage/{name} resumed\n"))?;
            Ok(())
        }
        Command::Undo { name, to_revision } => {
            let pkg = get(name.clone()).await?;
            let (version, image) = undo_target(&pkg, to_revision)?;
            let p = &pkg.spec.package;
            let swap = |s: &Option<String>| s.as_ref().map(|s| s.replace(&p.version, &version));
            let patch = json!({
                "spec": {
                    "package": {
                        "version": version,
                        "relativePath": swap(&p.relative_path),
                        "fullName": swap(&p.full_name),
                    },
                    "image": { "path": image },
                }
            });
            api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("patching appattachpackage/{name}"))?;
            super::out(&format!(
                "appattachpackage/{name} rolled back to {version} ({image}): a new rollout starts\n"
            ))?;
            Ok(())
        }
        Command::History { name } => {
            let pkg = get(name.clone()).await?;
            super::out(&render_history(
                &name,
                &pkg.status.unwrap_or_default().history,
            ))?;
            Ok(())
        }
    }
}

async fn set_paused(api: &Api<AppAttachPackage>, name: &str, paused: bool) -> anyhow::Result<()> {
    let patch = json!({ "spec": { "rollout": { "paused": paused } } });
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("patching appattachpackage/{name}"))?;
    Ok(())
}

/// How a rollout ended, or that it has not.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every host pool runs the spec's version.
    Complete,
    /// The rollout failed or is held.
    Failed(String),
    /// Still moving (or paused).
    InProgress,
}

/// Whether the package's rollout is complete, failed, or going on.
pub fn verdict(pkg: &AppAttachPackage) -> Verdict {
    let Some(st) = &pkg.status else {
        return Verdict::InProgress;
    };
    // Until the controller has looked at the spec as it is now, the status speaks of an
    // older one: a failure it reports may be the one the new spec retries.
    if st.observed_generation != pkg.metadata.generation {
        return Verdict::InProgress;
    }
    match &st.rollout {
        Some(r) if matches!(r.phase, RolloutPhase::Failed | RolloutPhase::Held) => Verdict::Failed(
            r.message
                .clone()
                .unwrap_or_else(|| r.phase.as_str().to_string()),
        ),
        Some(r) if is_active(r) => Verdict::InProgress,
        _ if st.current_version.as_deref() == Some(&pkg.spec.package.version) => Verdict::Complete,
        _ => Verdict::InProgress,
    }
}

/// The version and image `rollout undo` goes back to.
pub fn undo_target(
    pkg: &AppAttachPackage,
    to_revision: Option<i64>,
) -> anyhow::Result<(String, String)> {
    let st = pkg.status.clone().unwrap_or_default();
    if let Some(n) = to_revision {
        let r = st
            .history
            .iter()
            .find(|h| h.revision == n)
            .with_context(|| {
                format!(
                    "--to-revision {n}: no such revision in the history (see `rollout history`)"
                )
            })?;
        return Ok((r.version.clone(), r.image_path.clone()));
    }
    let spec_version = &pkg.spec.package.version;
    // While a rollout runs, or after one failed: back to what the host pools ran before.
    if let Some(r) = st
        .rollout
        .as_ref()
        .filter(|r| is_active(r) || r.phase == RolloutPhase::Failed)
        && let Some(prev) = r.previous.first()
        && &prev.version != spec_version
    {
        return Ok((prev.version.clone(), prev.image_path.clone()));
    }
    // Otherwise: the version the last completed rollout replaced.
    let last = st
        .history
        .iter()
        .find(|h| h.result == RolloutResult::Complete && &h.version == spec_version)
        .context("no earlier version to go back to: the history has no completed rollout to this version")?;
    match (&last.from_version, &last.from_image_path) {
        (Some(v), Some(i)) => Ok((v.clone(), i.clone())),
        _ => bail!("the history does not say which image the previous version came from"),
    }
}

/// The `rollout status` text: a line about the rollout, then a table per host pool.
pub fn render_status(pkg: &AppAttachPackage) -> String {
    let name = kube::ResourceExt::name_any(pkg);
    let st: AppAttachPackageStatus = pkg.status.clone().unwrap_or_default();
    let mut out = String::new();
    if st.observed_generation != pkg.metadata.generation {
        out.push_str(&format!(
            "appattachpackage/{name}: waiting for the controller to observe generation {}; the status below is of generation {}\n",
            pkg.metadata.generation.unwrap_or_default(),
            st.observed_generation.map_or("-".to_string(), |g| g.to_string())
        ));
    }
    match &st.rollout {
        Some(r) => out.push_str(&format!(
            "appattachpackage/{name}: revision {} {} -> {}: {} ({}{}): {}\n",
            r.revision,
            r.previous.first().map_or("-", |p| p.version.as_str()),
            r.target.version,
            r.phase.as_str(),
            r.step.as_str(),
            r.ring.map(|x| format!(", ring {x}")).unwrap_or_default(),
            r.message.clone().unwrap_or_default()
        )),
        None => out.push_str(&format!(
            "appattachpackage/{name}: no rollout; version {}\n",
            st.current_version
                .as_deref()
                .unwrap_or("(not reconciled yet)")
        )),
    }
    let mut rows = vec![[
        "RING".to_string(),
        "HOST POOL".into(),
        "VERSION".into(),
        "PHASE".into(),
        "STAGED".into(),
        "FAILED".into(),
        "OLD SESSIONS".into(),
    ]];
    let n = |v: Option<i32>| v.map_or("-".to_string(), |v| v.to_string());
    for p in &st.host_pools {
        rows.push([
            p.ring.to_string(),
            p.name.clone(),
            p.version.clone().unwrap_or_else(|| "-".into()),
            p.phase.map_or("-", |p| p.as_str()).to_string(),
            n(p.staged_hosts),
            n(p.failed_hosts),
            n(p.previous_version_sessions),
        ]);
    }
    out.push_str(&table(&rows));
    for i in &st.retained_images {
        out.push_str(&format!(
            "retained: {} ({}) - {} session(s) still use it\n",
            i.path, i.version, i.sessions
        ));
    }
    if let Some(r) = &st.rollout
        && (r.notified_sessions > 0 || r.logged_off_sessions > 0)
    {
        out.push_str(&format!(
            "sessions notified: {}, logged off after the grace period: {}\n",
            r.notified_sessions, r.logged_off_sessions
        ));
    }
    out
}

/// The `rollout history` table.
pub fn render_history(name: &str, history: &[RolloutRecord]) -> String {
    if history.is_empty() {
        return format!("appattachpackage/{name}: no rollouts yet\n");
    }
    let mut rows = vec![[
        "REVISION".to_string(),
        "VERSION".into(),
        "FROM".into(),
        "RESULT".into(),
        "STARTED".into(),
        "FINISHED".into(),
        "IMAGE".into(),
    ]];
    for h in history {
        rows.push([
            h.revision.to_string(),
            h.version.clone(),
            h.from_version.clone().unwrap_or_else(|| "-".into()),
            h.result.as_str().to_string(),
            h.started_at.clone().unwrap_or_else(|| "-".into()),
            h.finished_at.clone().unwrap_or_else(|| "-".into()),
            h.image_path.clone(),
        ]);
    }
    format!("appattachpackage/{name}\n{}", table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(status: serde_json::Value, version: &str) -> AppAttachPackage {
        serde_json::from_value(json!({
            "apiVersion": "appattach.io/v1alpha1",
            "kind": "AppAttachPackage",
            "metadata": {"name": "app", "namespace": "ns", "generation": 2},
            "spec": {
                "location": "westeurope",
                "image": {"path": format!(r"\\fs\s\app_{version}.cim")},
                "package": {"type": "Msix", "name": "Contoso.App", "publisher": "CN=Contoso", "version": version,
                            "relativePath": format!(r"\Contoso.App_{version}_x64__abc")}
            },
            "status": status
        }))
        .unwrap()
    }

    fn history() -> serde_json::Value {
        json!([{"revision": 1, "version": "2.0.0.0", "imagePath": r"\\fs\s\app_2.0.0.0.cim",
                "fromVersion": "1.0.0.0", "fromImagePath": r"\\fs\s\app_1.0.0.0.cim", "result": "Complete"}])
    }

    #[test]
    fn undo_goes_back_to_the_version_the_last_rollout_replaced() {
        let p = pkg(
            json!({"currentVersion": "2.0.0.0", "history": history()}),
            "2.0.0.0",
        );
        assert_eq!(
            undo_target(&p, None).unwrap(),
            ("1.0.0.0".to_string(), r"\\fs\s\app_1.0.0.0.cim".to_string())
        );
        assert_eq!(undo_target(&p, Some(1)).unwrap().0, "2.0.0.0");
        assert!(
            undo_target(&p, Some(7))
                .unwrap_err()
                .to_string()
                .contains("--to-revision 7")
        );
        let fresh = pkg(json!({"currentVersion": "1.0.0.0"}), "1.0.0.0");
        assert!(undo_target(&fresh, None).is_err());
    }

    #[test]
    fn status_is_complete_only_when_the_spec_version_runs_everywhere() {
        let done = pkg(
            json!({"observedGeneration": 2, "currentVersion": "2.0.0.0", "history": history(),
                   "rollout": {"revision": 1, "phase": "Complete", "step": "Done",
                               "target": {"version": "2.0.0.0", "imagePath": "x", "backendName": "b"}}}),
            "2.0.0.0",
        );
        assert_eq!(verdict(&done), Verdict::Complete);
        let failed = pkg(
            json!({"observedGeneration": 2, "currentVersion": "1.0.0.0",
                   "rollout": {"revision": 1, "phase": "Failed", "step": "Done", "message": "ring 0: r0-0 failed",
                               "target": {"version": "2.0.0.0", "imagePath": "x", "backendName": "b"}}}),
            "2.0.0.0",
        );
        assert_eq!(
            verdict(&failed),
            Verdict::Failed("ring 0: r0-0 failed".into())
        );
        let rolling = pkg(
            json!({"observedGeneration": 2, "currentVersion": "1.0.0.0"}),
            "2.0.0.0",
        );
        assert_eq!(verdict(&rolling), Verdict::InProgress);
    }

    #[test]
    fn a_failure_of_an_older_generation_is_not_the_verdict_on_a_new_spec() {
        // The spec changed (generation 3) to retry the version that failed; the controller
        // has not looked at it yet: the failure on record is generation 2's.
        let mut stale = pkg(
            json!({"observedGeneration": 2, "currentVersion": "1.0.0.0",
                   "rollout": {"revision": 1, "phase": "Failed", "step": "Done", "message": "ring 0: r0-0 failed",
                               "target": {"version": "2.0.0.0", "imagePath": "x", "backendName": "b"}}}),
            "2.0.0.0",
        );
        stale.metadata.generation = Some(3);
        assert_eq!(verdict(&stale), Verdict::InProgress);
        assert!(
            render_status(&stale).starts_with(
                "appattachpackage/app: waiting for the controller to observe generation 3; the status below is of generation 2"
            ),
            "{}",
            render_status(&stale)
        );
    }

    #[test]
    fn the_status_table_lines_up() {
        let p = pkg(
            json!({"observedGeneration": 2, "currentVersion": "2.0.0.0", "hostPools": [
                {"name": "hp-r0", "ring": 0, "version": "2.0.0.0", "phase": "Done", "stagedHosts": 2, "failedHosts": 0},
                {"name": "hp-long-name", "ring": 1, "version": "1.0.0.0", "phase": "Pending"}]}),
            "2.0.0.0",
        );
        let text = render_status(&p);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("no rollout"), "{text}");
        assert_eq!(lines[1].find("VERSION"), lines[2].find("2.0.0.0"), "{text}");
        assert_eq!(lines[3].find("1.0.0.0"), lines[2].find("2.0.0.0"), "{text}");
    }
}
