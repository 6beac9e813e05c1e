//! ARM's request budget (`--arm-budget`): token buckets per caller and kind, 429 with
//! Retry-After beyond them, what is left on every answer; and the ARM client keeping
//! within the same budget on its side.

use std::time::Instant;

use appattach_operator::backend::throttle::Limits;
use appattach_operator::backend::{ArmClient, Auth, Backend};
use appattach_operator::emulator::Budget;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

/// An answer, with the headers the budget sets.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    /// `x-ms-ratelimit-remaining-subscription-{kind}` for the request's kind.
    left: Option<String>,
    body: Value,
}

/// Sends an ARM request as `http` (whose User-Agent names the caller).
async fn call(
    em: &TestEmulator,
    http: &reqwest::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let kind = match method {
        Method::GET => "reads",
        Method::DELETE => "deletes",
        _ => "writes",
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut req = http.request(method, format!("{}{path}{sep}{API}", em.served.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the emulator answers");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let retry_after = header("retry-after");
    let left = header(&format!("x-ms-ratelimit-remaining-subscription-{kind}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        retry_after,
        left,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn agent(name: &str) -> reqwest::Client {
    reqwest::Client::builder().user_agent(name).build().unwrap()
}

/// Reads 5 at once then 1 a second; writes 2 and deletes 1 at once, then slowly, so that a
/// test is well inside the first second of each bucket.
const SMALL: Budget = Budget {
    reads: (5, 1.0),
    writes: (2, 0.1),
    deletes: (1, 0.1),
};

#[tokio::test]
async fn the_sixth_immediate_read_is_refused_and_each_kind_has_its_own_bucket() {
    let em = TestEmulator::start_with(|c| c.arm_budget = Some(SMALL)).await;
    let a = agent("replica-a");
    let pool = pool_id("hp-a");
    let mut left = Vec::new();
    for _ in 0..5 {
        let r = call(&em, &a, Method::GET, &pool, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.retry_after, None);
        left.push(r.left.expect("the remaining-reads header"));
    }
    assert_eq!(left, ["4", "3", "2", "1", "0"]);
    let r = call(&em, &a, Method::GET, &pool, None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert_eq!(r.left.as_deref(), Some("0"));
    assert_eq!(r.body["error"]["code"], "TooManyRequests", "{}", r.body);

    // Writes have their own bucket: two are served, the third refused and not applied.
    let body = |v: &str| package_body(r"\\fs\apps\a.cim", v, &["hp-a"]);
    for (name, want_left) in [("pkg-1", "1"), ("pkg-2", "0")] {
        let r = call(
            &em,
            &a,
            Method::PUT,
            &package_path(name),
            Some(body("1.0.0.0")),
        )
        .await;
        assert_eq!(
            (r.status, r.left.as_deref()),
            (201, Some(want_left)),
            "{}",
            r.body
        );
    }
    let r = call(
        &em,
        &a,
        Method::PUT,
        &package_path("pkg-3"),
        Some(body("1.0.0.0")),
    )
    .await;
    assert_eq!(
        (r.status, r.left.as_deref()),
        (429, Some("0")),
        "{}",
        r.body
    );
    let wait: u64 = r.retry_after.unwrap().parse().unwrap();
    assert!(
        (1..=10).contains(&wait),
        "writes refill one in 10 s: {wait}"
    );
    // So do deletes.
    let r = call(&em, &a, Method::DELETE, &package_path("pkg-1"), None).await;
    assert_eq!(
        (r.status, r.left.as_deref()),
        (200, Some("0")),
        "{}",
        r.body
    );
    let r = call(&em, &a, Method::DELETE, &package_path("pkg-2"), None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "TooManyRequests");

    // Another caller sees what was served: pkg-1 gone, pkg-2 kept, pkg-3 never made.
    let b = agent("replica-b");
    for (name, want) in [("pkg-1", 404), ("pkg-2", 200), ("pkg-3", 404)] {
        let r = call(&em, &b, Method::GET, &package_path(name), None).await;
        assert_eq!(r.status, want, "{name}: {}", r.body);
    }
    let (_, counts) = em.get("/_emulator/requests").await;
    assert_eq!(
        counts["budgetRefused"],
        json!({"reads": 1, "writes": 1, "deletes": 1})
    );
    assert_eq!(
        counts["total"], 14,
        "refused requests are counted as requests too"
    );
    assert_eq!(counts["writes"], 5);
}

#[tokio::test]
async fn callers_by_user_agent_have_their_own_budgets_and_one_token_is_one_caller() {
    let budget = Budget {
        reads: (3, 0.1),
        ..SMALL
    };
    let em = TestEmulator::start_with(|c| c.arm_budget = Some(budget)).await;
    let pool = pool_id("hp-a");
    let (a, b) = (agent("replica-a"), agent("replica-b"));
    for _ in 0..3 {
        assert_eq!(call(&em, &a, Method::GET, &pool, None).await.status, 200);
    }
    assert_eq!(call(&em, &a, Method::GET, &pool, None).await.status, 429);
    let r = call(&em, &b, Method::GET, &pool, None).await;
    assert_eq!((r.status, r.left.as_deref()), (200, Some("2")));
    // No User-Agent at all: one more caller, "anonymous".
    let r = call(&em, &reqwest::Client::new(), Method::GET, &pool, None).await;
    assert_eq!((r.status, r.left.as_deref()), (200, Some("2")));

    // With the emulator's static token, every caller presents the same one: one budget,
    // whatever the User-Agent.
    let em = TestEmulator::start_with(|c| {
        c.arm_budget = Some(budget);
        c.token = Some("shared-token".into());
    })
    .await;
    let bearer = |name: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::AUTHORIZATION,
            "Bearer shared-token".parse().unwrap(),
        );
        reqwest::Client::builder()
            .user_agent(name)
            .default_headers(h)
            .build()
            .unwrap()
    };
    let (a, b) = (bearer("replica-a"), bearer("replica-b"));
    for want in ["2", "1"] {
        let r = call(&em, &a, Method::GET, &pool, None).await;
        assert_eq!(
            (r.status, r.left.as_deref()),
            (200, Some(want)),
            "{}",
            r.body
        );
    }
    let r = call(&em, &b, Method::GET, &pool, None).await;
    assert_eq!(
        (r.status, r.left.as_deref()),
        (200, Some("0")),
        "{}",
        r.body
    );
    assert_eq!(call(&em, &b, Method::GET, &pool, None).await.status, 429);
}

#[tokio::test]
async fn the_emulators_own_routes_are_not_counted() {
    let budget = Budget {
        reads: (1, 0.1),
        writes: (1, 0.1),
        deletes: (1, 0.1),
    };
    let em = TestEmulator::start_with(|c| c.arm_budget = Some(budget)).await;
    for _ in 0..5 {
        let resp = em
            .http
            .get(format!("{}/_emulator/requests", em.served.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()
                .get("x-ms-ratelimit-remaining-subscription-reads")
                .is_none()
        );
        assert_eq!(em.post("/_emulator/stage", json!({})).await.0, 200);
        assert_eq!(em.delete("/_emulator/faults").await.0, 200);
    }
    let r = call(&em, &em.http, Method::GET, &pool_id("hp-a"), None).await;
    assert_eq!(
        (r.status, r.left.as_deref()),
        (200, Some("0")),
        "{}",
        r.body
    );
    assert_eq!(
        call(&em, &em.http, Method::GET, &pool_id("hp-a"), None)
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn without_a_budget_nothing_is_refused() {
    let em = TestEmulator::start().await;
    let pool = pool_id("hp-a");
    // More than ARM's burst of reads, at once.
    for i in 1..=260u64 {
        let r = call(&em, &em.http, Method::GET, &pool, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // What is left of the hourly count the emulator keeps without a budget.
        assert_eq!(r.left, Some((12_000 - i).to_string()));
    }
    let (_, counts) = em.get("/_emulator/requests").await;
    assert_eq!(
        counts["budgetRefused"],
        json!({"reads": 0, "writes": 0, "deletes": 0})
    );
}

/// ARM's rates with a tenth of its bursts (to keep the tests short) at the emulator, and the
/// client's budget one read token inside it.
fn tenth_of_arm() -> (Budget, Limits) {
    let budget = Budget {
        reads: (25, 25.0),
        writes: (20, 10.0),
        deletes: (20, 10.0),
    };
    let limits = Limits {
        reads: (24, 25.0),
        ..budget
    };
    (budget, limits)
}

/// A client that keeps within ARM's limits on its side is never refused by an emulator
/// enforcing them: over its budget it waits its turn instead of sending.
///
/// The client's burst is one token under the emulator's. With equal budgets the emulator
/// does refuse now and then: it counts each request a little later than the client did,
/// and when a request travels faster than an earlier one, the emulator has had less time
/// to refill than the client reckoned, a fraction of a token short (with equal budgets
/// this test saw a 429 in 11 of 20 runs). One token of slack absorbs any such difference
/// under a second divided by the rate (40 ms at 25 a second).
///
/// ARM's rates, a tenth of its bursts, to keep the test short.
#[tokio::test]
async fn a_client_a_token_inside_the_budget_is_never_refused() {
    let (budget, limits) = tenth_of_arm();
    let em = TestEmulator::start_with(|c| c.arm_budget = Some(budget)).await;
    let client = ArmClient::new(&em.served.url(), SUB, RG, Auth::None)
        .with_instance("budget-test")
        .with_limits(limits);
    let pool = client.host_pool_id("hp-a");
    const READS: usize = 60;
    let started = Instant::now();
    // Eight readers at once, as a controller's passes are.
    let reads = futures::future::join_all((0..8).map(|r| {
        let (client, pool) = (client.clone(), pool.clone());
        async move {
            for n in (r..READS).step_by(8) {
                match client.get_host_pool(&pool).await {
                    Ok(Some(_)) => {}
                    other => panic!("read {n}: {other:?}"),
                }
            }
        }
    }));
    reads.await;
    let served = READS;
    let waits = client
        .metrics()
        .throttled
        .get_or_create(&appattach_operator::backend::throttle::WaitLabels {
            source: "client".into(),
            target: client.metrics().target(),
        })
        .get();
    let (_, counts) = em.get("/_emulator/requests").await;
    assert_eq!(
        counts["budgetRefused"],
        json!({"reads": 0, "writes": 0, "deletes": 0}),
        "after {served} reads and {waits} waits in {:?}",
        started.elapsed()
    );
    assert_eq!(counts["total"], READS as u64);
    assert!(
        waits > 0,
        "{READS} reads are more than a burst: the client waited"
    );
}

/// A restarted process starts with a full bucket, while the emulator (as ARM) remembers
/// what its previous life spent: the client takes what the server says is left
/// (`x-ms-ratelimit-remaining-subscription-reads`) and is not refused.
#[tokio::test]
async fn a_restarted_client_believes_what_the_server_says_is_left() {
    let (budget, limits) = tenth_of_arm();
    let em = TestEmulator::start_with(|c| c.arm_budget = Some(budget)).await;
    let life = || {
        ArmClient::new(&em.served.url(), SUB, RG, Auth::None)
            .with_instance("restarted")
            .with_limits(limits)
    };
    let first = life();
    let pool = first.host_pool_id("hp-a");
    for _ in 0..20 {
        first.get_host_pool(&pool).await.unwrap();
    }
    drop(first);
    // The same identity, a full bucket of 24 here, about 5 left at the server.
    let second = life();
    for n in 0..30 {
        second
            .get_host_pool(&pool)
            .await
            .unwrap_or_else(|e| panic!("read {n}: {e:?}"));
    }
    let (_, counts) = em.get("/_emulator/requests").await;
    assert_eq!(
        counts["budgetRefused"],
        json!({"reads": 0, "writes": 0, "deletes": 0})
    );
}
