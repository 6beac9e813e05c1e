//! Emulator at scale: 10,000 app attach packages, 500 host pools, 5,000 session hosts and
//! 50,000 users, served over real HTTP on loopback with state persisted to disk.
//!
//! Run: `cargo bench --bench emulator` (add `-- --quick` for a smaller, faster run).
//! Prints a Markdown table; BENCHMARKS.md records it.

use std::time::{Duration, Instant};

use appattach_operator::arm::models::ApplicationGroupType;
use appattach_operator::emulator::world::{
    Directory, DirectoryGroup, DirectoryUser, IdentityProvider, Os, WorldAppGroup, WorldHostPool,
    WorldSessionHost,
};
use appattach_operator::emulator::{Config, Emulator, World};
use serde_json::json;

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const RG: &str = "rg-bench";
const API: &str = "api-version=2024-04-03";

struct Scale {
    packages: usize,
    pools: usize,
    hosts_per_pool: usize,
    users: usize,
    groups: usize,
}

fn guid(kind: u32, i: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

fn world(s: &Scale) -> World {
    let groups: Vec<DirectoryGroup> = (0..s.groups)
        .map(|g| DirectoryGroup {
            name: format!("group-{g}"),
            object_id: guid(1, g),
        })
        .collect();
    let users = (0..s.users)
        .map(|u| DirectoryUser {
            upn: format!("user{u}@contoso.com"),
            object_id: guid(2, u),
            groups: vec![format!("group-{}", u % s.groups)],
        })
        .collect();
    let host_pools = (0..s.pools)
        .map(|p| WorldHostPool {
            name: format!("hp-{p}"),
            location: "westeurope".into(),
            pool_type: "Pooled".into(),
            identity_provider: IdentityProvider::EntraId,
            session_hosts: (0..s.hosts_per_pool)
                .map(|h| WorldSessionHost {
                    name: format!("hp{p}-{h}.contoso.com"),
                    os: Os::Windows11,
                    image: None,
                    license_type: None,
                })
                .collect(),
            vm_resource_group: None,
        })
        .collect();
    let application_groups = (0..s.pools)
        .map(|p| WorldAppGroup {
            name: format!("ag-{p}"),
            host_pool: format!("hp-{p}"),
            group_type: ApplicationGroupType::Desktop,
            members: vec![format!("group-{}", p % s.groups)],
        })
        .collect();
    // Field by field: a World keeps a private lookup of its directory, built on first use.
    let mut world = World::default();
    world.subscription = SUB.into();
    world.resource_group = RG.into();
    world.host_pools = host_pools;
    world.application_groups = application_groups;
    world.directory = Directory { users, groups };
    world
}

fn rg() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DesktopVirtualization")
}

fn package(i: usize, pools: usize) -> serde_json::Value {
    let refs: Vec<String> = (0..3)
        .map(|k| format!("{}/hostPools/hp-{}", rg(), (i + k * 7) % pools))
        .collect();
    json!({
        "location": "westeurope",
        "properties": {
            "image": {
                "imagePath": format!(r"\\fs\apps\Pkg{i}_1.0.0.0.cim"),
                "packageName": format!("Contoso.Pkg{i}"),
                "packageFamilyName": format!("Contoso.Pkg{i}_8h66172c634n0"),
                "packageFullName": format!("Contoso.Pkg{i}_1.0.0.0_x64__8h66172c634n0"),
                "displayName": format!("Package {i}"),
                "isRegularRegistration": false,
                "isActive": true,
                "version": "1.0.0.0",
                "packageApplications": [{"appId": "App", "friendlyName": "App"}],
                "certificateName": "CN=Contoso",
                "certificateExpiry": "2028-01-01T00:00:00Z",
                "isPackageTimestamped": "Timestamped"
            },
            "hostPoolReferences": refs,
            "failHealthCheckOnStagingFailure": "NeedsAssistance"
        }
    })
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        p50: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        mean: samples.iter().sum::<Duration>() / n as u32,
    }
}

async fn time_gets(http: &reqwest::Client, urls: &[String]) -> Stats {
    let mut samples = Vec::with_capacity(urls.len());
    for url in urls {
        let started = Instant::now();
        let resp = http.get(url).send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        let _ = resp.bytes().await.unwrap();
        samples.push(started.elapsed());
    }
    stats(samples)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let s = if quick {
        Scale {
            packages: 1_000,
            pools: 50,
            hosts_per_pool: 10,
            users: 5_000,
            groups: 100,
        }
    } else {
        Scale {
            packages: 10_000,
            pools: 500,
            hosts_per_pool: 10,
            users: 50_000,
            groups: 1_000,
        }
    };
    let state = tempfile::tempdir().unwrap();
    eprintln!(
        "emulator bench: {} packages, {} host pools, {} session hosts, {} users (state in {})",
        s.packages,
        s.pools,
        s.pools * s.hosts_per_pool,
        s.users,
        state.path().display()
    );
    let started = Instant::now();
    let served = Emulator::start(Config {
        world: Some(world(&s)),
        state_dir: Some(state.path().join("s")),
        ..Default::default()
    })
    .await
    .unwrap();
    let world_load = started.elapsed();
    eprintln!("world loaded in {}", ms(world_load));
    let base = served.url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .unwrap();

    // Load the packages over HTTP, 8 writers at a time.
    let started = Instant::now();
    let mut put_samples = Vec::with_capacity(s.packages);
    let chunks: Vec<Vec<usize>> = (0..s.packages)
        .collect::<Vec<_>>()
        .chunks(s.packages.div_ceil(8))
        .map(|c| c.to_vec())
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (http, base, pools) = (http.clone(), base.clone(), s.pools);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            for i in chunk {
                let url = format!("{base}{}/appAttachPackages/pkg-{i}?{API}", rg());
                let t = Instant::now();
                let resp = http
                    .put(&url)
                    .json(&package(i, pools))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 201);
                samples.push(t.elapsed());
                if i % 2000 == 0 {
                    eprintln!("  ... package {i}");
                }
            }
            samples
        }));
    }
    for t in tasks {
        put_samples.extend(t.await.unwrap());
    }
    let load = started.elapsed();
    let put = stats(put_samples);

    let n = 1000;
    let package_urls: Vec<String> = (0..n)
        .map(|k| {
            format!(
                "{base}{}/appAttachPackages/pkg-{}?{API}",
                rg(),
                (k * 7919) % s.packages
            )
        })
        .collect();
    let host_urls: Vec<String> = (0..n)
        .map(|k| {
            let p = (k * 31) % s.pools;
            format!(
                "{base}{}/hostPools/hp-{p}/sessionHosts/hp{p}-{}.contoso.com?{API}",
                rg(),
                k % s.hosts_per_pool
            )
        })
        .collect();
    let pool_urls: Vec<String> = (0..200)
        .map(|k| format!("{base}{}/hostPools/hp-{}?{API}", rg(), (k * 13) % s.pools))
        .collect();
    let by_pool: Vec<String> = (0..200)
        .map(|k| {
            format!(
                "{base}{}/appAttachPackages?{API}&pageSize=100&$filter=hostPool%20eq%20'hp-{}'",
                rg(),
                (k * 17) % s.pools
            )
        })
        .collect();
    let by_name: Vec<String> = (0..200)
        .map(|k| {
            format!(
                "{base}{}/appAttachPackages?{API}&$filter=packageName%20eq%20'Contoso.Pkg{}'",
                rg(),
                (k * 101) % s.packages
            )
        })
        .collect();
    let first_page: Vec<String> = (0..100)
        .map(|_| format!("{base}{}/appAttachPackages?{API}&pageSize=100", rg()))
        .collect();
    // Warm the connection pool once.
    time_gets(&http, &package_urls[..10]).await;

    let rows = [
        (
            "GET one app attach package",
            time_gets(&http, &package_urls).await,
            n,
        ),
        (
            "GET one session host",
            time_gets(&http, &host_urls).await,
            n,
        ),
        (
            "GET one host pool (computes its package references)",
            time_gets(&http, &pool_urls).await,
            200,
        ),
        (
            "list page, $filter by host pool (100 per page)",
            time_gets(&http, &by_pool).await,
            200,
        ),
        (
            "list page, $filter by package name",
            time_gets(&http, &by_name).await,
            200,
        ),
        (
            "list first page, no filter (100 per page)",
            time_gets(&http, &first_page).await,
            100,
        ),
        (
            "PUT one app attach package (8 writers, durable commit)",
            put,
            s.packages,
        ),
    ];
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);

    println!(
        "\n| operation ({} packages, {} host pools, {} session hosts, {} users) | requests | p50 | p99 | mean |",
        s.packages,
        s.pools,
        s.pools * s.hosts_per_pool,
        s.users
    );
    println!("| --- | --- | --- | --- | --- |");
    for (name, st, count) in &rows {
        println!(
            "| {name} | {count} | {} | {} | {} |",
            ms(st.p50),
            ms(st.p99),
            ms(st.mean)
        );
    }
    println!();
    println!(
        "- world load (host pools, session hosts, application groups, role assignments): {}",
        ms(world_load)
    );
    println!(
        "- loading {} packages over HTTP: {:.1} s ({:.0} PUT/s)",
        s.packages,
        load.as_secs_f64(),
        s.packages as f64 / load.as_secs_f64()
    );
    println!(
        "- bench process RSS after the run (emulator and client): {} MiB",
        rss / 1024
    );
    served.shutdown().await;
}
