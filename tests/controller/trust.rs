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
