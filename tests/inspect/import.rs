//! The emulator's `hostPools/{hp}/importAppAttachPackageInfo` over real HTTP: it reads an
//! image from the share with the inspection code and answers as the service does.

use std::path::Path;

use appattach_operator::emulator::{Config, Emulator, Served, World};
use serde_json::{Value, json};

use crate::cli::{appattach, independent_publisher_id};
use crate::support::{Certs, build_package, manifest, require_tools, sign};

const API: &str = "api-version=2024-04-03";
const POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-avd/providers/Microsoft.DesktopVirtualization/hostPools/hp-pilot";

async fn emulator(share: &Path) -> Served {
    let world: World = serde_yaml_ng::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/world.yaml"))
            .unwrap(),
    )
    .unwrap();
    Emulator::start(Config {
        world: Some(world),
        shares: vec![format!(r"\\fs\apps={}", share.display()).parse().unwrap()],
        state_dir: None,
        token: None,
        staging_interval: None,
        arm_budget: None,
    })
    .await
    .expect("the emulator starts")
}

async fn import(served: &Served, pool: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{pool}/importAppAttachPackageInfo?{API}", served.url());
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A signed, timestamped package in a VHDX made by `appattach image create`, on the share.
fn image_on_share(share: &Path, work: &Path) -> (Certs, String) {
    require_tools(appattach_operator::inspect::tools::IMAGE_CREATE);
    let certs = Certs::make(work);
    let publisher = certs.code_signing.subject.clone();
    let xml = manifest(
        "Contoso.Ledger",
        &publisher,
        "4.0.1.0",
        Some("x64"),
        &[("Ledger", "Contoso Ledger")],
        &[(
            "Microsoft.VCLibs.140.00.UWPDesktop",
            "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US",
            "14.0.30704.0",
        )],
    );
    let unsigned = build_package(
        work,
        "Contoso.Ledger_4.0.1.0_x64.msix",
        &xml,
        &[("Ledger.exe", b"MZ ledger")],
    );
    let ts = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 60).unwrap();
    let signed = sign(&unsigned, &certs.code_signing, Some((&certs.tsa, ts)));
    let image = share.join("Contoso.Ledger_4.0.1.0_x64.vhdx");
    let out = appattach(&[
        "image",
        "create",
        "--package",
        signed.to_str().unwrap(),
        "--out",
        image.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (certs, publisher)
}

#[tokio::test]
async fn import_reads_the_image_through_the_share() {
    let share = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (certs, publisher) = image_on_share(share.path(), work.path());
    let served = emulator(share.path()).await;
    let path = r"\\fs\apps\Contoso.Ledger_4.0.1.0_x64.vhdx";

    let (status, body) = import(
        &served,
        POOL,
        json!({ "path": path, "packageArchitecture": "x64" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let value = body["value"].as_array().expect("a list");
    assert_eq!(value.len(), 1, "{body}");
    let id = independent_publisher_id(&publisher);
    let full = format!("Contoso.Ledger_4.0.1.0_x64__{id}");
    assert!(
        value[0]["type"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("Microsoft.DesktopVirtualization/appAttachPackages"),
        "{body}"
    );
    assert_eq!(value[0]["location"], "westeurope");
    let image = &value[0]["properties"]["image"];
    assert_eq!(image["imagePath"], path);
    assert_eq!(image["packageName"], "Contoso.Ledger");
    assert_eq!(image["packageFamilyName"], format!("Contoso.Ledger_{id}"));
    assert_eq!(image["packageFullName"], full);
    assert_eq!(
        image["packageRelativePath"],
        format!(r"\Contoso.Ledger\{full}")
    );
    assert_eq!(image["version"], "4.0.1.0");
    assert_eq!(image["displayName"], "Contoso.Ledger");
    assert_eq!(image["isActive"], false);
    assert_eq!(image["packageApplications"][0]["appId"], "Ledger");
    assert_eq!(
        image["packageApplications"][0]["friendlyName"],
        "Contoso Ledger"
    );
    assert_eq!(
        image["packageApplications"][0]["appUserModelID"],
        format!("Contoso.Ledger_{id}!Ledger")
    );
    assert_eq!(
        image["packageDependencies"][0]["minVersion"],
        "14.0.30704.0"
    );
    assert_eq!(image["certificateName"], publisher);
    assert_eq!(
        image["certificateExpiry"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap(),
        certs.code_signing.not_after
    );
    assert_eq!(image["isPackageTimestamped"], "Timestamped");
    assert!(
        image["lastUpdated"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );

    // ALL, or no architecture, gives it too; another architecture gives nothing.
    for arch in [json!("ALL"), Value::Null] {
        let (status, body) = import(
            &served,
            POOL,
            json!({ "path": path, "packageArchitecture": arch }),
        )
        .await;
        assert_eq!(
            (status, body["value"].as_array().map(Vec::len)),
            (200, Some(1)),
            "{body}"
        );
    }
    let (status, body) = import(
        &served,
        POOL,
        json!({ "path": path, "packageArchitecture": "ARM64" }),
    )
    .await;
    assert_eq!(
        (status, body["value"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
}

#[tokio::test]
async fn import_errors_say_what_is_wrong() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(
        share.path().join("broken.vhdx"),
        b"vhdxfile but nothing else",
    )
    .unwrap();
    std::fs::write(share.path().join("app.cim"), b"cim").unwrap();
    std::fs::create_dir(share.path().join("lonely")).unwrap();
    std::fs::write(share.path().join("lonely/app.cim"), b"cim").unwrap();
    for f in ["objectid_0a_0", "region_0a_0"] {
        std::fs::write(share.path().join(f), b"x").unwrap();
    }
    std::fs::write(share.path().join("app.msix"), b"PK").unwrap();
    let served = emulator(share.path()).await;
    let missing_pool = POOL.replace("hp-pilot", "hp-nope");
    let cases = [
        (
            POOL,
            json!({}),
            400,
            "InvalidParameter",
            "'path' is required",
        ),
        (
            POOL,
            json!({ "path": r"\\fs\apps\broken.vhdx", "packageArchitecture": "mips" }),
            400,
            "InvalidParameter",
            "packageArchitecture",
        ),
        (
            POOL,
            json!({ "path": r"\\other\share\x.vhdx" }),
            400,
            "InvalidParameter",
            "not on a share",
        ),
        (
            POOL,
            json!({ "path": r"\\fs\apps\nope.vhdx" }),
            400,
            "InvalidParameter",
            "does not exist",
        ),
        (
            POOL,
            json!({ "path": r"\\fs\apps\broken.vhdx" }),
            400,
            "InvalidParameter",
            r"\\fs\apps\broken.vhdx",
        ),
        (
            POOL,
            json!({ "path": r"\\fs\apps\app.cim" }),
            400,
            "UnsupportedImageFormat",
            "CimFS",
        ),
        (
            POOL,
            json!({ "path": r"\\fs\apps\lonely\app.cim" }),
            400,
            "InvalidParameter",
            "no objectid_* file",
        ),
        (
            POOL,
            json!({ "path": r"\\fs\apps\app.msix" }),
            400,
            "InvalidParameter",
            "is a package, not an image",
        ),
        (
            missing_pool.as_str(),
            json!({ "path": r"\\fs\apps\broken.vhdx" }),
            404,
            "ParentResourceNotFound",
            "hp-nope",
        ),
    ];
    for (pool, body, status, code, message) in cases {
        let (got, reply) = import(&served, pool, body.clone()).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
        let text = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{body}: {message:?} not in {text}");
        // The share's local folder never shows through.
        assert!(!text.contains(&*share.path().to_string_lossy()), "{text}");
    }
}
