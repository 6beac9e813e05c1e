//! `appattach plan` and `appattach validate` as a pull request runs them: manifests in a
//! folder, the emulator the controller reconciles into, the binary as users run it.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;
use crate::support::repo_path;

/// Writes `objects` as one multi-document YAML file.
fn write(path: &Path, objects: &[&Value]) {
    let text: String = objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).unwrap()))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Runs the binary; its exit code, stdout and stderr.
async fn appattach(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(args)
        .current_dir(repo_path(""))
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run_plan(env: &Env, dir: &Path, output: &str) -> (i32, String, String) {
    let url = env.emulator.url();
    appattach(&[
        "plan",
        "-f",
        dir.to_str().unwrap(),
        "-n",
        &env.ns.name,
        "--against",
        "emulator",
        &url,
        "-o",
        output,
        "--detailed-exitcode",
    ])
    .await
}

async fn plan_json(env: &Env, dir: &Path) -> Value {
    let (code, out, err) = run_plan(env, dir, "json").await;
    assert!(
        code == 0 || code == 2,
        "plan failed ({code}):\n{out}\n{err}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The writes the emulator took since the counts were reset.
async fn writes(env: &Env) -> Vec<Value> {
    let counts = env.counts().await;
    let mut out: Vec<Value> = counts["applied"].as_array().cloned().unwrap_or_default();
    out.extend(
        counts["byPath"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["method"] != "GET")
            .cloned(),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_who_gains_an_assignment_and_nothing_once_the_controller_applied_it() {
    let env = Env::new("plan_assignment", Duration::from_secs(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let (pkg, hpa) = (
        package("expenses"),
        pools("expenses-pools", "expenses", &[("hp-a", 0)]),
    );
    env.ns.apply(&pkg).await.unwrap();
    env.ns.apply(&hpa).await.unwrap();
    env.wait_package("expenses", 1, 0).await;
    write(&dir.path().join("package.yaml"), &[&pkg, &hpa]);
    let ua = users(
        "finance",
        "expenses",
        &[("Group", "Finance", Some(FINANCE))],
    );
    write(&dir.path().join("users.yaml"), &[&ua]);

    env.reset_counts().await;
    let plan = plan_json(&env, dir.path()).await;
    let p = &plan["packages"][0];
    assert_eq!(p["object"], format!("{}/expenses", env.ns.name), "{plan:#}");
    assert_eq!(p["status"], "Update", "{plan:#}");
    let changes = p["changes"].as_array().unwrap();
    assert_eq!(
        changes.len(),
        1,
        "only the role assignment is new: {plan:#}"
    );
    assert_eq!(changes[0]["action"], "create");
    assert!(
        changes[0]["resource"]
            .as_str()
            .unwrap()
            .starts_with("roleAssignments/")
            && changes[0]["detail"]
                .as_str()
                .unwrap()
                .contains("Group Finance"),
        "{plan:#}"
    );
    // alice is in Finance and may use hp-a; bob (Sales) may not.
    assert_eq!(plan["entitlementsOf"], "users");
    assert_eq!(
        plan["entitlements"],
        json!([{"who": "alice@contoso.com", "hostPool": "hp-a", "package": "Contoso.expenses",
                "change": "gains", "toVersion": "1.0.0.0"}]),
        "{plan:#}"
    );
    let (code, text, _) = run_plan(&env, dir.path(), "text").await;
    assert_eq!(
        code, 2,
        "changes give exit 2 with --detailed-exitcode:\n{text}"
    );
    assert!(
        text.contains("+ alice@contoso.com gains Contoso.expenses 1.0.0.0 on hp-a"),
        "{text}"
    );
    let (_, markdown, _) = run_plan(&env, dir.path(), "markdown").await;
    assert!(
        markdown.contains("| + gains | alice@contoso.com | hp-a | Contoso.expenses | 1.0.0.0 |"),
        "{markdown}"
    );
    assert_eq!(
        writes(&env).await,
        Vec::<Value>::new(),
        "plan wrote to the backend"
    );

    env.ns.apply(&ua).await.unwrap();
    env.wait_package("expenses", 1, 1).await;
    env.wait_ready("UserAssignment", "finance").await;
    let plan = plan_json(&env, dir.path()).await;
    assert_eq!(plan["packages"][0]["status"], "NoChange", "{plan:#}");
    assert_eq!(plan["packages"][0]["changes"], json!([]), "{plan:#}");
    assert_eq!(plan["entitlements"], json!([]), "{plan:#}");
    let (code, text, _) = run_plan(&env, dir.path(), "text").await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("No changes"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_rings_a_version_change_rolls_through() {
    let env = Env::new("plan_rollout", Duration::from_secs(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let pkg = package("expenses");
    let hpa = pools(
        "expenses-pools",
        "expenses",
        &[("hp-r0", 0), ("hp-r1", 1), ("hp-r2", 2)],
    );
    let ua = users(
        "finance",
        "expenses",
        &[("Group", "Finance", Some(FINANCE))],
    );
    for o in [&pkg, &hpa, &ua] {
        env.ns.apply(o).await.unwrap();
    }
    env.wait_package("expenses", 3, 1).await;
    let mut next = pkg.clone();
    next["spec"]["package"]["version"] = json!("1.1.0.0");
    next["spec"]["image"]["path"] = json!(r"\\fs\apps\expenses_1.1.0.0.vhdx");
    write(&dir.path().join("all.yaml"), &[&next, &hpa, &ua]);

    env.reset_counts().await;
    let plan = plan_json(&env, dir.path()).await;
    let p = &plan["packages"][0];
    assert_eq!(p["status"], "Rollout", "{plan:#}");
    assert_eq!(
        p["rollout"]["rings"],
        json!([{"ring": 0, "hostPools": ["hp-r0"]}, {"ring": 1, "hostPools": ["hp-r1"]},
               {"ring": 2, "hostPools": ["hp-r2"]}]),
        "{plan:#}"
    );
    assert_eq!(p["rollout"]["from"], "1.0.0.0");
    assert_eq!(p["rollout"]["to"], "1.1.0.0");
    let new_name = format!("{}-v1-1-0-0", env.backend_name("expenses"));
    assert_eq!(p["backendName"], new_name.as_str(), "{plan:#}");
    let actions: Vec<(String, String)> = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions[0],
        ("create".into(), format!("appAttachPackages/{new_name}"))
    );
    assert!(actions.contains(&(
        "delete".into(),
        format!("appAttachPackages/{}", env.backend_name("expenses"))
    )));
    // alice keeps the app, in the new version, on each pool.
    let changes: Vec<(&str, &str)> = plan["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["hostPool"].as_str().unwrap(),
                e["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("hp-r0", "changes"),
            ("hp-r1", "changes"),
            ("hp-r2", "changes")
        ],
        "{plan:#}"
    );
    let (_, text, _) = run_plan(&env, dir.path(), "text").await;
    assert!(
        text.contains(
            "rollout 1.0.0.0 -> 1.1.0.0\n    ring 0: hp-r0\n    ring 1: hp-r1\n    ring 2: hp-r2\n"
        ),
        "{text}"
    );
    assert_eq!(
        writes(&env).await,
        Vec::<Value>::new(),
        "plan wrote to the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_each_problem_at_its_line_and_checks_the_rest() {
    let env = Env::new("validate_lines", Duration::from_secs(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bad_path = package("broken");
    bad_path["spec"]["image"]["path"] = json!(r"C:\apps\broken.cim");
    write(
        &dir.path().join("a.yaml"),
        &[
            &package("expenses"),
            &pools(
                "expenses-pools",
                "expenses",
                &[("hp-a", 0), ("hp-nowhere", 1)],
            ),
            &bad_path,
        ],
    );
    std::fs::write(
        dir.path().join("b.yaml"),
        "kind: UserAssignment\n  bad: [indent\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
    )
    .unwrap();
    let (code, out, err) = appattach(&[
        "validate",
        "-f",
        dir.path().to_str().unwrap(),
        "--against",
        &format!("emulator={}", env.emulator.url()),
    ])
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let a = dir.path().join("a.yaml").display().to_string();
    let b = dir.path().join("b.yaml").display().to_string();
    let lines: Vec<&str> = out.lines().collect();
    let written = std::fs::read_to_string(&a).unwrap();
    let line = 1 + written
        .lines()
        .position(|l| l.trim_start().trim_start_matches("- ") == "name: hp-nowhere")
        .unwrap();
    let expected_pool = format!(
        "{a}:{line}: HostPoolAssignment/expenses-pools: spec.hostPools[1].name: host pool hp-nowhere was not found in the backend"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&expected_pool)),
        "{out}\n(expected a line starting {expected_pool})"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{a}:"))
            && l.contains("AppAttachPackage/broken: spec.image.path: Invalid value")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{b}:2: not valid YAML"))),
        "{out}"
    );
    assert!(
        err.contains("ConfigMap/other (v1): not an appattach.io object"),
        "{err}"
    );
}

#[tokio::test]
async fn every_example_validates_against_the_example_world() {
    let (code, out, err) = appattach(&[
        "validate",
        "-f",
        "examples/",
        "-n",
        "avd-apps",
        "--against",
        "world",
        "examples/world.yaml",
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.lines().all(|l| l.contains(": warning: ")),
        "only warnings: {out}"
    );
    // Every assigned principal of the example estate gets its package somewhere.
    assert!(!out.contains("PrincipalNotReached"), "{out}");
    // 9 of examples/, 4 of examples/azure/ (three BackendTargets, one package).
    assert!(err.contains("13 appattach.io object(s) accepted"), "{err}");
}

/// The example estate with (`published`) or without the RemoteApp publishing of Fabrikam
/// Designer in a folder of its own.
fn examples_copy(published: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "packages.yaml",
        "host-pool-assignments.yaml",
        "user-assignments.yaml",
    ] {
        let mut text = std::fs::read_to_string(repo_path(&format!("examples/{f}"))).unwrap();
        if !published && f == "host-pool-assignments.yaml" {
            let at = text
                .find("      remoteAppGroups:")
                .expect("the example publishes");
            let end = text[at..].find("---").map_or(text.len(), |e| at + e);
            text.replace_range(at..end, "");
        }
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn plan_shows_remote_app_publishing_and_whom_it_reaches_and_validate_warns_without_it() {
    let against = ["--against", "world", "examples/world.yaml"];
    let published = examples_copy(true);
    let dir = published.path().to_str().unwrap();
    let (code, out, err) = appattach(
        &[
            &["plan", "-f", dir, "-n", "avd-apps", "-o", "json"][..],
            &against[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let designer = plan["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["object"] == "avd-apps/fabrikam-designer")
        .unwrap();
    let publishing: Vec<&Value> = designer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["resource"]
                .as_str()
                .unwrap()
                .starts_with("applicationGroups/ag-design-remoteapp/applications/aa-")
        })
        .collect();
    assert_eq!(publishing.len(), 2, "both applications: {designer:#}");
    assert!(publishing.iter().all(|c| c["action"] == "create"));
    let bob_gains = |plan: &Value| {
        plan["entitlements"].as_array().unwrap().iter().any(|e| {
            e["who"] == "bob@contoso.com" && e["hostPool"] == "hp-design" && e["change"] == "gains"
        })
    };
    assert!(bob_gains(&plan), "{:#}", plan["entitlements"]);

    let unpublished = examples_copy(false);
    let dir = unpublished.path().to_str().unwrap();
    let (_, out, _) = appattach(
        &[
            &["plan", "-f", dir, "-n", "avd-apps", "-o", "json"][..],
            &against[..],
        ]
        .concat(),
    )
    .await;
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert!(!bob_gains(&plan), "{:#}", plan["entitlements"]);
    let (code, out, err) =
        appattach(&[&["validate", "-f", dir, "-n", "avd-apps"][..], &against[..]].concat()).await;
    assert_eq!(code, 0, "a warning does not fail validation: {out}\n{err}");
    let warning = out
        .lines()
        .find(|l| l.ends_with("[PrincipalNotReached]"))
        .unwrap_or_else(|| panic!("no PrincipalNotReached warning:\n{out}"));
    for needed in [
        "AppAttachPackage/fabrikam-designer: warning: Group Designers",
        "hp-design",
        "ag-design-remoteapp",
        "remoteAppGroups",
    ] {
        assert!(warning.contains(needed), "{needed} missing: {warning}");
    }
}

#[tokio::test]
async fn output_piped_into_a_reader_that_stops_early_ends_quietly() {
    // `appattach plan ... | head -1`: the reader goes after one line.
    use tokio::io::AsyncBufReadExt;
    for args in [
        &["crd"][..],
        &[
            "plan",
            "-f",
            "examples/",
            "--against",
            "world",
            "examples/world.yaml",
        ][..],
    ] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
            .args(args)
            .current_dir(repo_path(""))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.next_line().await.unwrap().is_some(), "{args:?}");
        drop(lines);
        let out = child.wait_with_output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
    }
}
