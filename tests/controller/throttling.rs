//! ARM throttling: the server's Retry-After, and the controller's own request budget.

use std::time::Duration;

use appattach_operator::backend::throttle::Limits;
use serde_json::{Value, json};

use crate::harness::{Env, package, poll};

async fn log(env: &Env) -> Vec<Value> {
    env.get("/_emulator/requests/log").await.1["value"]
        .as_array()
        .unwrap()
        .clone()
}

fn at(v: &Value) -> jiff::Timestamp {
    v["at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_429_with_retry_after_holds_the_next_request_that_long() {
    let env = Env::new("throttle-429", Duration::from_secs(600)).await;
    let path = env.package_path("slow").to_ascii_lowercase();
    let (code, body) = env
        .arm(
            reqwest::Method::POST,
            "/_emulator/faults",
            Some(json!({"method": "PUT", "pathContains": path, "status": 429, "retryAfterSeconds": 2, "count": 1})),
        )
        .await;
    assert!(code < 300, "{body}");
    env.apply_assigned("slow", &[("hp-a", 0)]).await;
    env.wait_package("slow", 1, 1).await;
    let entries: Vec<Value> = log(&env)
        .await
        .into_iter()
        .filter(|e| e["path"] == path.as_str())
        .collect();
    let refused = entries
        .iter()
        .position(|e| e["status"] == 429)
        .unwrap_or_else(|| panic!("no 429 in {entries:?}"));
    let next = &entries[refused + 1];
    let waited = at(next).duration_since(at(&entries[refused]));
    assert!(
        waited >= jiff::SignedDuration::from_secs(2),
        "the next request came {waited:?} after the 429: {entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_package_changes_stays_within_the_write_budget() {
    let mut env = Env::new("throttle-budget", Duration::from_secs(600)).await;
    env.concurrency = 16;
    let (burst, rate) = (10u32, 25.0);
    env.limits = Some(Limits {
        reads: (100_000, 1e6),
        writes: (burst, rate),
        deletes: (burst, rate),
    });
    env.stop_controller().await;
    env.start_controller();
    const N: usize = 500;
    for i in 0..N {
        env.ns
            .apply(&package(&format!("burst-{i:03}")))
            .await
            .unwrap();
    }
    poll(&format!("all {N} packages Ready"), || async {
        let list = env
            .ns
            .api("AppAttachPackage")
            .list(&Default::default())
            .await
            .unwrap();
        let ready = list
            .items
            .iter()
            .filter(|p| {
                serde_json::to_value(p).unwrap()["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count();
        (ready == N).then_some(()).ok_or(format!("{ready} Ready"))
    })
    .await;
    // Every window of the emulator's log holds at most the burst plus the rate times its
    // length (one more for the log's millisecond rounding). The client takes its tokens
    // when it sends; the log stamps a request when the emulator serves it, and a loaded
    // machine delays some requests more than others, so arrivals bunch: the window is
    // widened by JITTER. A client without a budget sends the 500 at once, far beyond it.
    const JITTER: f64 = 0.25;
    let writes: Vec<jiff::Timestamp> = log(&env)
        .await
        .iter()
        .filter(|e| e["method"] != "GET")
        .map(at)
        .collect();
    assert!(writes.len() >= N, "{} writes", writes.len());
    for i in 0..writes.len() {
        for j in i..writes.len() {
            let span = writes[j].duration_since(writes[i]).as_secs_f64();
            let allowed = f64::from(burst) + rate * (span + JITTER) + 1.0;
            assert!(
                (j - i + 1) as f64 <= allowed,
                "{} writes in {span:.3}s (allowed {allowed:.1})",
                j - i + 1
            );
        }
    }
}
