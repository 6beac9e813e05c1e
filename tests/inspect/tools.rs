//! The Debian tools the tests run: a missing one fails a test with one line naming it and
//! the package to install, and `.ci/install-test-tools`, which README.md names next to
//! the test command, installs exactly those packages.

use std::path::PathBuf;

use appattach_operator::inspect::tools::{DEBIAN_PACKAGES, IMAGE_CREATE};

use crate::support::{missing_tool, tool_in};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_missing_tool_fails_the_test_with_one_line_naming_its_debian_package() {
    let empty = tempfile::tempdir().unwrap();
    let nowhere = [empty.path().to_path_buf()];
    for (name, package) in DEBIAN_PACKAGES {
        let panic = std::panic::catch_unwind(|| tool_in(name, &nowhere))
            .expect_err("a missing tool fails the test");
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| panic!("{name}: the failure is not a message"));
        assert_eq!(message, missing_tool(name));
        assert_eq!(message.lines().count(), 1, "{message}");
        for part in [
            format!("{name} not found"),
            format!("the Debian package {package}"),
            format!("sudo apt-get install {package}"),
            "bash .ci/install-test-tools".to_string(),
        ] {
            assert!(message.contains(&part), "{part:?} not in {message}");
        }
        assert!(!message.contains("No such file"), "{message}");
    }
}

#[test]
fn image_creation_without_its_tools_names_the_missing_one_and_its_package() {
    let tmp = tempfile::tempdir().unwrap();
    let package = crate::support::build_package(
        tmp.path(),
        "notes.msix",
        &crate::support::manifest(
            "Contoso.Notes",
            "CN=Contoso",
            "1.0.0.0",
            Some("x64"),
            &[("Notes", "Notes")],
            &[],
        ),
        &[("Notes.exe", b"MZ")],
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // A PATH without the tools: those in /usr/bin (wimtools, qemu-utils) are not found.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["image", "create", "--allow-unsigned", "--package"])
        .arg(&package)
        .arg("--out")
        .arg(tmp.path().join("notes.vhdx"))
        .env("PATH", &empty)
        .env("APPATTACH_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        IMAGE_CREATE.iter().any(|tool| {
            let package = appattach_operator::inspect::tools::debian_package(tool).unwrap();
            error.ends_with(&format!(
                "{tool} not found: install the Debian package {package} (sudo apt-get install {package})"
            ))
        }),
        "{error}"
    );
    assert!(!tmp.path().join("notes.vhdx").exists());
}

/// The pairs `tool=package` the install script installs.
fn script_pairs() -> Vec<(String, String)> {
    let script = repo_file(".ci/install-test-tools");
    let line = script
        .lines()
        .find(|l| l.starts_with("pairs=("))
        .expect(".ci/install-test-tools lists its pairs=(tool=package ...)");
    line.trim_start_matches("pairs=(")
        .trim_end_matches(')')
        .split_whitespace()
        .filter(|w| *w != "\"$@\"")
        .map(|w| {
            let (t, p) = w.split_once('=').unwrap_or_else(|| panic!("{w}"));
            (t.to_string(), p.to_string())
        })
        .collect()
}

#[test]
fn the_install_script_installs_the_package_of_every_tool_the_tests_run() {
    let mut script = script_pairs();
    let mut table: Vec<(String, String)> = DEBIAN_PACKAGES
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    script.sort();
    table.sort();
    assert_eq!(
        script, table,
        ".ci/install-test-tools and src/inspect/tools.rs name different tools or packages"
    );
}

#[test]
fn the_readme_names_the_install_script_next_to_the_test_command() {
    let readme = repo_file("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let test = lines
        .iter()
        .position(|l| *l == "    cargo test")
        .expect("README.md gives `    cargo test`");
    let install = lines
        .iter()
        .position(|l| *l == "    bash .ci/install-test-tools")
        .expect("README.md gives `    bash .ci/install-test-tools` as a command");
    assert!(
        install.abs_diff(test) <= 8,
        "the install command is far from the test command (lines {test} and {install})"
    );
    let run = repo_file(".ci/run");
    assert!(
        run.lines()
            .any(|l| l.starts_with("bash .ci/install-test-tools")),
        ".ci/run installs through the same script"
    );
}
