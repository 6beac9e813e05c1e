//! The README's first command works: `appattach local --once` brings the examples to
//! Ready against a fresh control plane and the embedded emulator.

use std::time::Duration;

use appattach_operator::controlplane::Binaries;

use crate::support::repo_path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_main_job_brings_every_example_to_ready() {
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["local", "--once"])
        .env("APPATTACH_CONTROLPLANE_BIN", bins.dir())
        .current_dir(repo_path(""))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("appattach local --once finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "appattach local --once failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("all 3 packages and their assignments are Ready"),
        "{stderr}"
    );
    for name in ["contoso-expenses", "fabrikam-designer", "northwind-orders"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("appattachpackage.appattach.io/{name}")))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{stdout}"));
        assert!(
            line.contains("True") && line.contains("Reconciled"),
            "{line}"
        );
    }
    // bob (Designers) signs in to hp-design through its RemoteApp group only, where the
    // example publishes Fabrikam Designer: he gets it there.
    let bob = stdout
        .split("\n\n")
        .find(|block| block.contains("bob@contoso.com"))
        .unwrap_or_else(|| panic!("no table for bob:\n{stdout}"));
    assert!(
        bob.lines().any(|l| l.starts_with("hp-design")
            && l.contains("yes")
            && l.contains("avd-apps-fabrikam-designer")),
        "{bob}"
    );
    // carol (Finance, Pilot Users) gets Contoso Expenses on the pilot pool.
    assert!(
        stdout.lines().any(|l| l.starts_with("hp-pilot")
            && l.contains("yes")
            && l.contains("avd-apps-contoso-expenses")),
        "{stdout}"
    );
}

/// The README's rollout walk-through, against `appattach local`: a new version of
/// Contoso Expenses rolls out ring by ring, and `kubectl appattach rollout status --watch`
/// follows it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_rollout_walk_through_works_against_the_local_setup() {
    use tokio::io::AsyncBufReadExt;
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut local = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .arg("local")
        .env("APPATTACH_CONTROLPLANE_BIN", bins.dir())
        .current_dir(repo_path(""))
        .stdout(std::process::Stdio::piped())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(local.stdout.take().unwrap()).lines();
    let (mut kubeconfig, mut path) = (String::new(), String::new());
    let up = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(v) = line.trim().strip_prefix("export KUBECONFIG=") {
                kubeconfig = v.to_string();
            }
            if let Some(v) = line.trim().strip_prefix("export PATH=") {
                path = v.split(':').next().unwrap().to_string();
            }
            if line.contains("Press Ctrl-C") {
                return;
            }
        }
        panic!(
            "appattach local ended early: {}",
            std::fs::read_to_string(log.path()).unwrap()
        );
    };
    tokio::time::timeout(Duration::from_secs(240), up)
        .await
        .expect("appattach local came up");
    assert!(!kubeconfig.is_empty() && !path.is_empty());
    let run = |args: Vec<&'static str>| {
        let (kubeconfig, path) = (kubeconfig.clone(), path.clone());
        async move {
            let out = tokio::process::Command::new(format!("{path}/kubectl"))
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env(
                    "PATH",
                    format!("{path}:{}", std::env::var("PATH").unwrap_or_default()),
                )
                .output()
                .await
                .unwrap();
            crate::support::outcome(&out)
        }
    };
    let (ok, text) = run(vec![
        "-n",
        "avd-apps",
        "patch",
        "aap",
        "contoso-expenses",
        "--type",
        "merge",
        "-p",
        WALK_THROUGH_PATCH,
    ])
    .await;
    assert!(ok, "{text}");
    let (ok, text) = run(vec![
        "appattach",
        "rollout",
        "status",
        "contoso-expenses",
        "-n",
        "avd-apps",
        "--watch",
        "--timeout",
        "3m",
    ])
    .await;
    assert!(ok, "{text}");
    assert!(
        text.contains("Complete") && text.contains("hp-pilot"),
        "{text}"
    );
    let (ok, text) = run(vec![
        "appattach",
        "rollout",
        "history",
        "contoso-expenses",
        "-n",
        "avd-apps",
    ])
    .await;
    assert!(
        ok && text.contains("2.5.0.0") && text.contains("Complete"),
        "{text}"
    );
    // The README shows this very patch.
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    assert!(
        readme.contains(WALK_THROUGH_PATCH),
        "README.md lost the walk-through patch"
    );
    local.kill().await.unwrap();
}

const WALK_THROUGH_PATCH: &str = r#"{"spec":{"package":{"version":"2.5.0.0","relativePath":"\\Contoso.Expenses_2.5.0.0_x64__8h66172c634n0"},"image":{"path":"\\\\fs.contoso.com\\appattach\\Contoso.Expenses_2.5.0.0_x64.cim"},"rollout":{"soak":"20s"}}}"#;
