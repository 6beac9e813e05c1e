//! The roots the session hosts trust, declared in a ConfigMap the controller watches
//! (`--trusted-roots`): a package whose certificate's root is not among them is not
//! Ready and nothing of it is written; declaring the root lets it through, at once.

use serde_json::{Value, json};

use appattach_operator::inspect::signature::certificate_name;

use crate::harness::*;
use crate::support::set;

/// A self-signed CA certificate: its PEM and SHA-1 thumbprint.
fn root(common_name: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let thumbprint = certificate_name(cert.der()).unwrap().thumbprint;
    (cert.pem(), thumbprint)
}

fn signed_under(name: &str, root_subject: &str, thumbprint: &str) -> Value {
    set(
        package(name),
        "/spec/certificate",
        json!({
            "subject": "CN=Contoso", "expiry": "2030-01-01T00:00:00Z", "timestamped": true,
            "thumbprint": "0123456789ABCDEF0123456789ABCDEF01234567",
            "root": {"subject": root_subject, "thumbprint": thumbprint}
        }),
    )
}

fn configmap(pems: &[&str]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "appattach-trusted-roots"},
        "data": {"roots.pem": pems.concat(), "README": "not a certificate: ignored"}
    })
}

#[tokio::test]
async fn a_package_under_a_root_the_hosts_do_not_trust_waits_until_it_is_declared() {
    let mut env = Env::new("trust", std::time::Duration::from_secs(600)).await;
    env.stop_controller().await;
    env.trusted_roots = Some((env.ns.name.clone(), "appattach-trusted-roots".into()));
    env.start_controller();
    let (contoso, contoso_thumbprint) = root("Contoso Root");
    let (fabrikam, fabrikam_thumbprint) = root("Fabrikam Root");

    // No ConfigMap yet: said (a warning), not refused.
    env.ns
        .apply(&signed_under(
            "early",
            "CN=Contoso Root",
            &contoso_thumbprint,
        ))
        .await
        .unwrap();
    env.ns
        .apply(&pools("early-pools", "early", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.wait_warning("early", "TrustedRootsUnavailable").await;
    env.wait_ready("AppAttachPackage", "early").await;

    env.ns.apply(&configmap(&[&contoso])).await.unwrap();
    // Under a declared root: reconciled.
    env.ns
        .apply(&signed_under(
            "good",
            "CN=Contoso Root",
            &contoso_thumbprint,
        ))
        .await
        .unwrap();
    env.ns
        .apply(&pools("good-pools", "good", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.wait_ready("AppAttachPackage", "good").await;
    // Under another root: not Ready, saying which root and where to declare it; nothing
    // written to the backend.
    env.ns
        .apply(&signed_under(
            "other",
            "CN=Fabrikam Root",
            &fabrikam_thumbprint,
        ))
        .await
        .unwrap();
    env.ns
        .apply(&pools("other-pools", "other", &[("hp-a", 0)]))
        .await
        .unwrap();
    let status = env
        .wait_condition(
            "AppAttachPackage",
            "other",
            "Ready",
            "False",
            Some("CertificateUntrusted"),
        )
        .await;
    let message = status.to_string();
    assert!(message.contains("CN=Fabrikam Root"), "{message}");
    assert!(message.contains("appattach-trusted-roots"), "{message}");
    env.wait_warning("other", "CertificateUntrusted").await;
    let (code, _) = env.get(&env.package_path("other")).await;
    assert_eq!(code, 404, "nothing of an untrusted package is written");

    // The hosts come to trust Fabrikam's root: declared, the package goes through without
    // waiting for a resync.
    env.ns
        .apply(&configmap(&[&contoso, &fabrikam]))
        .await
        .unwrap();
    env.wait_ready("AppAttachPackage", "other").await;
    let (code, _) = env.get(&env.package_path("other")).await;
    assert_eq!(code, 200);
}

/// `appattach validate` reads the same ConfigMap from the manifests and reports an
/// untrusted root at the package's line, before anything is applied.
#[tokio::test]
async fn validate_reports_an_untrusted_root_at_the_packages_line() {
    let (contoso, contoso_thumbprint) = root("Contoso Root");
    let (_, fabrikam_thumbprint) = root("Fabrikam Root");
    let dir = tempfile::tempdir().unwrap();
    let mut docs = vec![configmap(&[&contoso])];
    docs[0]["metadata"]["namespace"] = json!("appattach-system");
    docs.push(signed_under("good", "CN=Contoso Root", &contoso_thumbprint));
    docs.push(signed_under(
        "other",
        "CN=Fabrikam Root",
        &fabrikam_thumbprint,
    ));
    let yaml: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect();
    let file = dir.path().join("apps.yaml");
    std::fs::write(&file, yaml.join("---\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args(["validate", "-f", file.to_str().unwrap(), "-n", "avd-apps"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let text = yaml.join("---\n");
    let other_line = text
        .lines()
        .position(|l| l.contains("name: other"))
        .map(|i| i + 1)
        .unwrap();
    let refusal = stdout
        .lines()
        .find(|l| l.ends_with("[CertificateUntrusted]"))
        .unwrap_or_else(|| panic!("no CertificateUntrusted in {stdout}"));
    assert!(
        refusal.contains("AppAttachPackage/other: spec.certificate.root CN=Fabrikam Root"),
        "{refusal}"
    );
    assert!(refusal.contains("CN=Fabrikam Root"), "{refusal}");
    assert!(
        refusal.contains("ConfigMap appattach-system/appattach-trusted-roots"),
        "{refusal}"
    );
    let at: usize = refusal.split(':').nth(1).unwrap().parse().unwrap();
    // The package's document: its first line, or the line of its certificate's root.
    assert!(
        at <= other_line + 20 && at + 20 >= other_line,
        "{refusal} vs line {other_line}"
    );
    assert!(!stdout.contains("AppAttachPackage/good:"), "{stdout}");
}
