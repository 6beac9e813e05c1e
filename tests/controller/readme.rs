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
    // carol (Finance, Pilot Users) gets Contoso Expenses on the pilot pool.
    assert!(
        stdout.lines().any(|l| l.starts_with("hp-pilot")
            && l.contains("yes")
            && l.contains("avd-apps-contoso-expenses")),
        "{stdout}"
    );
}
