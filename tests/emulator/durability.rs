//! State survives a restart, and a kill -9 in the middle of writes never leaves it
//! unreadable or half-applied.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use appattach_operator::emulator::{Config, Emulator};

use crate::support::*;

#[tokio::test]
async fn state_persists_across_a_restart() {
    let em = TestEmulator::start().await;
    em.create_package(
        "pkg-one",
        package_body(r"\\fs\apps\a.cim", "1.0.0.0", &["hp-a"]),
    )
    .await;
    let (_, before) = em.get(&package_path("pkg-one")).await;
    let (status, _) = em.assign(&package_path("pkg-one"), FINANCE).await;
    assert_eq!(status, 201);
    let state = em.state.clone();
    let TestEmulator {
        served,
        share,
        _state_root,
        http,
        ..
    } = em;
    drop(http); // its idle keep-alive connections would hold the server open
    served.shutdown().await;

    // Restart on the same state, without a world file: the stored world is kept.
    let served = Emulator::start(Config {
        state_dir: Some(state),
        shares: vec![share_mapping(share.path())],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("{}{}?{API}", served.url(), package_path("pkg-one"));
    let after: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(after, before);
    let roles: serde_json::Value = reqwest::get(format!(
        "{}{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
        served.url(),
        package_path("pkg-one")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(roles["value"].as_array().unwrap().len(), 1);
    let hosts: serde_json::Value = reqwest::get(format!(
        "{}{}/sessionHosts?{API}",
        served.url(),
        pool_id("hp-a")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        hosts["value"].as_array().unwrap().len(),
        2,
        "the world came back with the state"
    );
    drop(_state_root);
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary; returns the process and its URL.
fn spawn_emulator(world: &std::path::Path, state: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--staging-interval",
            "0s",
        ])
        .arg("--world")
        .arg(world)
        .arg("--state")
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the appattach binary starts");
    let stdout = child.stdout.take().unwrap();
    // Keep reading in the background so the emulator never writes into a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the emulator prints its address");
    let url = line.rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://"), "unexpected first line: {line}");
    (Child(child), url)
}

#[tokio::test]
async fn kill_9_during_writes_leaves_every_acknowledged_write_and_no_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let world_file = dir.path().join("world.yaml");
    std::fs::write(&world_file, serde_yaml_ng::to_string(&world()).unwrap()).unwrap();
    let state = dir.path().join("state");
    let (child, url) = spawn_emulator(&world_file, &state);
    let http = reqwest::Client::new();

    // Writers update packages in place (new version, new image) as fast as they can.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u32,
    >::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, acked) = (http.clone(), url.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for v in 1u32.. {
                let name = format!("pkg-{w}");
                let body = package_body(
                    &format!(r"\\fs\apps\{name}_{v}.cim"),
                    &format!("1.0.0.{v}"),
                    &["hp-a", "hp-b"],
                );
                let sent = http
                    .put(format!("{url}{}?{API}", package_path(&name)))
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().insert(name, v);
                    }
                    _ => break, // the server is gone
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().values().sum::<u32>() < 200 {
        assert!(Instant::now() < deadline, "the writers made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // kill -9, mid-write.
    let mut child = child;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();

    let (_child, url) = spawn_emulator(&world_file, &state);
    for (name, v) in acked {
        let got: serde_json::Value = http
            .get(format!("{url}{}?{API}", package_path(&name)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let image = &got["properties"]["image"];
        let version: u32 = image["version"]
            .as_str()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Every acknowledged write is there; at most the one in flight went further.
        assert!(
            version == v || version == v + 1,
            "{name}: acknowledged {v}, found {version}"
        );
        // Never half-applied: the image and the version are from the same write.
        assert_eq!(
            image["imagePath"],
            format!(r"\\fs\apps\{name}_{version}.cim")
        );
        assert_eq!(
            got["properties"]["hostPoolReferences"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
