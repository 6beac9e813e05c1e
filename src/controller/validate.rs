//! Validation the API server cannot do: the package's spec against the backend's world
//! (host pools, their region, identity provider and session hosts) and the clock. Pure.

use crate::controller::observe::TrustView;
use crate::domain::host_os::{HostOs, OsKind};
use crate::resources::{AppAttachPackageSpec, ImageFormat, PackageMode};

/// Azure Files allows this many open handles per file; one session host holds one handle
/// per image file.
pub const HANDLES_PER_FILE_LIMIT: usize = 2_000;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something the controller could not check, and why: said in the `Degraded`
    /// condition's message and a Normal event, without making the package Degraded.
    Info,
    /// Worth knowing; the package is still reconciled.
    Warning,
    /// The package cannot be reconciled until someone changes something.
    Error,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Warning or Error.
    pub severity: Severity,
    /// Stable CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, naming the field, and what to do.
    pub message: String,
}

impl Finding {
    fn error(reason: &'static str, message: String) -> Self {
        Self {
            severity: Severity::Error,
            reason,
            message,
        }
    }
    fn warning(reason: &'static str, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            reason,
            message,
        }
    }
    fn info(reason: &'static str, message: String) -> Self {
        Self {
            severity: Severity::Info,
            reason,
            message,
        }
    }
}

/// What the backend says about one assigned host pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFacts {
    /// The name as the assignment gives it.
    pub name: String,
    /// Where it is given: `HostPoolAssignment/NAME spec.hostPools[i]`.
    pub field: String,
    /// Region.
    pub location: String,
    /// Identity provider (`EntraID`, `ADDS`, `EntraDS`), when known.
    pub identity_provider: Option<String>,
    /// The operating system of each session host, as far as the backend tells it.
    pub hosts: Vec<HostOs>,
    /// Whether the pool already carries packages of the other feature.
    pub has_other_feature: bool,
}

/// Whether an `osVersion` is Windows 11 (client build 22000 or later). Windows Server
/// 2022 is build 20348; Windows 10, 19xxx.
pub fn is_windows_11(os_version: &str) -> bool {
    os_version
        .split('.')
        .nth(2)
        .and_then(|b| b.parse::<u32>().ok())
        .is_some_and(|b| b >= 22_000)
}

/// Checks a package against its host pools, the roots the session hosts trust (when
/// declared) and the time now.
pub fn validate(
    spec: &AppAttachPackageSpec,
    pools: &[PoolFacts],
    trust: Option<&TrustView>,
    now: jiff::Timestamp,
) -> Vec<Finding> {
    let mut out = rollout(spec, pools, now);
    let format = spec
        .image
        .format
        .or_else(|| ImageFormat::from_path(&spec.image.path));
    for pool in pools {
        out.extend(pool_findings(spec, pool, format));
    }
    if format == Some(ImageFormat::Vhd) {
        out.push(Finding::warning(
            "VhdNotRecommended",
            "spec.image.path is a VHD image; VHD is not recommended: use CimFS or VHDX".to_string(),
        ));
    }
    out.extend(certificate(spec, now));
    out.extend(trust.and_then(|t| trusted_root(spec, t)));
    let hosts: usize = pools.iter().map(|p| p.hosts.len()).sum();
    if hosts > HANDLES_PER_FILE_LIMIT {
        out.push(Finding::warning(
            "ShareHandleLimit",
            format!(
                "{hosts} session hosts mount this image: one open handle each per file, over the {HANDLES_PER_FILE_LIMIT} Azure Files allows per file; split the host pools over copies of the image"
            ),
        ));
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// The rollout's settings: the maintenance window, and a health check that hides staging
/// failures from the gate.
fn rollout(spec: &AppAttachPackageSpec, pools: &[PoolFacts], now: jiff::Timestamp) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(w) = &spec.rollout.maintenance_window {
        if let Err(message) = super::planner::window(w, now) {
            out.push(Finding::error("InvalidMaintenanceWindow", message));
        } else if spec.mode == PackageMode::AppAttach {
            out.push(Finding::warning(
                "MaintenanceWindowIgnored",
                "spec.rollout.maintenanceWindow applies to spec.mode MsixAppAttach only: app attach switches host pools without draining session hosts, so it is not used".into(),
            ));
        }
    }
    if spec.health_check_on_staging_failure
        == crate::resources::HealthCheckOnStagingFailure::DoNotFail
        && !pools.is_empty()
    {
        out.push(Finding::warning(
            "StagingFailuresHidden",
            "spec.healthCheckOnStagingFailure DoNotFail: session hosts report healthy even when staging fails, so a rollout's gate cannot see a bad image; use NeedsAssistance (default) or Unhealthy".into(),
        ));
    }
    out
}

/// One host pool: its identity provider, its region, the other feature, and CimFS on
/// hosts that do not run Windows 11.
fn pool_findings(
    spec: &AppAttachPackageSpec,
    pool: &PoolFacts,
    format: Option<ImageFormat>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let supported: &[&str] = match spec.mode {
        PackageMode::AppAttach => &["EntraID", "ADDS"],
        PackageMode::MsixAppAttach => &["ADDS"],
    };
    if let Some(idp) = &pool.identity_provider
        && !supported.contains(&idp.as_str())
    {
        out.push(Finding::error(
            "IdentityProviderNotSupported",
            format!(
                "{}: host pool {} uses identity provider {idp}, which spec.mode {:?} does not support (supported: {}); assign a host pool joined to a supported identity provider{}",
                pool.field,
                pool.name,
                spec.mode,
                supported.join(", "),
                if spec.mode == PackageMode::MsixAppAttach { ", or use spec.mode AppAttach" } else { "" }
            ),
        ));
    }
    if !crate::arm::location::same(&pool.location, &spec.location) {
        out.push(Finding::error(
            "RegionMismatch",
            format!(
                "{}: host pool {} is in {}, but spec.location is {}; a package and its host pools must be in the same region",
                pool.field, pool.name, pool.location, spec.location
            ),
        ));
    }
    if pool.has_other_feature {
        let other = match spec.mode {
            PackageMode::AppAttach => "MSIX app attach packages",
            PackageMode::MsixAppAttach => "app attach packages",
        };
        out.push(Finding::error(
            "HostPoolFeatureConflict",
            format!(
                "{}: host pool {} already uses {other}; a host pool uses app attach or MSIX app attach, never both",
                pool.field, pool.name
            ),
        ));
    }
    out.extend(session_host_os(spec, pool, format));
    out
}

/// The session hosts' operating systems: app attach applications run on Windows client
/// session hosts only, and CimFS is recommended on Windows 11 only. A host whose VM says
/// it runs Windows Server is not Windows 11 whatever its build (Windows Server 2025 and
/// Windows 11 24H2 are both 26100); one of unknown kind is judged by its `osVersion` for
/// CimFS, and the hosts whose kind is unknown for a lasting reason are said, once per pool.
fn session_host_os(
    spec: &AppAttachPackageSpec,
    pool: &PoolFacts,
    format: Option<ImageFormat>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let servers = pool
        .hosts
        .iter()
        .filter(|h| h.kind == OsKind::WindowsServer)
        .count();
    if spec.mode == PackageMode::AppAttach && servers > 0 {
        out.push(Finding::warning(
            "WindowsServerSessionHosts",
            format!(
                "{}: {servers} of the {} session host(s) of host pool {} run Windows Server; app attach applications run on Windows client session hosts only: assign the package to a host pool of Windows 11 or Windows 10 Enterprise (multi-session) session hosts, or replace these hosts",
                pool.field,
                pool.hosts.len(),
                pool.name
            ),
        ));
    }
    let not_11 = |h: &HostOs| {
        h.kind == OsKind::WindowsServer
            || h.os_version.as_deref().is_some_and(|v| !is_windows_11(v))
    };
    let others = pool.hosts.iter().filter(|h| not_11(h)).count();
    if format == Some(ImageFormat::CimFS) && others > 0 {
        out.push(Finding::warning(
            "CimFSNeedsWindows11",
            format!(
                "spec.image.path is a CimFS image, but {others} session host(s) of host pool {} do not run Windows 11; CimFS is recommended on Windows 11 only",
                pool.name
            ),
        ));
    }
    // Unknown kinds matter where a Windows Server host would be warned about: every host
    // in app attach, and a host taken for Windows 11 by its build under a CimFS image.
    let matters = |h: &HostOs| {
        spec.mode == PackageMode::AppAttach || (format == Some(ImageFormat::CimFS) && !not_11(h))
    };
    let mut why: std::collections::BTreeMap<&crate::domain::host_os::Unknown, usize> =
        std::collections::BTreeMap::new();
    for h in pool.hosts.iter().filter(|h| matters(h)) {
        if let Some(u) = h.unknown.as_ref().filter(|u| u.is_lasting()) {
            *why.entry(u).or_default() += 1;
        }
    }
    if !why.is_empty() {
        let n: usize = why.values().sum();
        let reasons: Vec<String> = why
            .iter()
            .map(|(u, k)| format!("{k} because {}", u.explain()))
            .collect();
        out.push(Finding::info(
            "SessionHostOsUnknown",
            format!(
                "{}: whether {n} session host(s) of host pool {} run Windows Server is not known, so it is not checked: {}",
                pool.field,
                pool.name,
                reasons.join("; ")
            ),
        ));
    }
    out
}

/// Whether the root `spec.certificate.root` names is among the roots the session hosts
/// trust: by thumbprint when the spec gives one, else by subject.
fn trusted_root(spec: &AppAttachPackageSpec, trust: &TrustView) -> Option<Finding> {
    let cert = spec.certificate.as_ref()?;
    let roots = match trust {
        TrustView::Unavailable { source, why } => {
            return Some(Finding::warning(
                "TrustedRootsUnavailable",
                format!(
                    "whether the session hosts trust the package's signer is not checked: {source} cannot be read ({why})"
                ),
            ));
        }
        TrustView::Roots { source, roots } => (source, roots),
    };
    let (source, roots) = roots;
    let Some(root) = &cert.root else {
        return Some(Finding::warning(
            "CertificateRootUnknown",
            "spec.certificate.root is not set, so whether the session hosts trust the signer is not checked; run appattach inspect --trust on the package and take its spec.certificate"
                .to_string(),
        ));
    };
    let known = roots
        .iter()
        .any(|(subject, thumbprint)| match &root.thumbprint {
            Some(t) => t.eq_ignore_ascii_case(thumbprint),
            None => crate::inspect::signature::same_distinguished_name(subject, &root.subject),
        });
    if known {
        return None;
    }
    let listed: Vec<String> = roots
        .iter()
        .take(5)
        .map(|(s, t)| format!("{s} ({t})"))
        .collect();
    let listed = if listed.is_empty() {
        "none".to_string()
    } else if roots.len() > 5 {
        format!("{}, and {} more", listed.join(", "), roots.len() - 5)
    } else {
        listed.join(", ")
    };
    let thumbprint = root
        .thumbprint
        .as_deref()
        .map_or(String::new(), |t| format!(" (thumbprint {t})"));
    Some(Finding::error(
        "CertificateUntrusted",
        format!(
            "spec.certificate.root {}{thumbprint} is not among the roots the session hosts trust ({source}: {listed}); the hosts would refuse the package (CERT_E_UNTRUSTEDROOT). Add that root to {source} if the hosts trust it, or sign the package with a certificate that chains to one of them",
            root.subject
        ),
    ))
}

/// An expired certificate without a timestamp, or one that expires within 30 days.
fn certificate(spec: &AppAttachPackageSpec, now: jiff::Timestamp) -> Option<Finding> {
    let cert = spec.certificate.as_ref()?;
    match cert.expiry.parse::<jiff::Timestamp>() {
        Ok(expiry) if expiry <= now && !cert.timestamped => Some(Finding::error(
            "CertificateExpired",
            format!(
                "spec.certificate.expiry {} has passed and the package is not timestamped; sign it with a valid certificate (and timestamp it), then update spec.certificate",
                cert.expiry
            ),
        )),
        Ok(expiry)
            if expiry > now
                && expiry.duration_since(now).as_secs() < 30 * 24 * 3600
                && !cert.timestamped =>
        {
            Some(Finding::warning(
                "CertificateExpiresSoon",
                format!(
                    "spec.certificate.expiry {} is within 30 days; re-sign or timestamp the package",
                    cert.expiry
                ),
            ))
        }
        Ok(_) => None,
        Err(e) => Some(Finding::error(
            "InvalidCertificateExpiry",
            format!("spec.certificate.expiry: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::host_os::{VmFacts, VmRead, classify};

    fn spec(yaml: &str) -> AppAttachPackageSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const BASE: &str = r#"
location: westeurope
image: {path: '\\fs\apps\a.cim'}
package: {type: Msix, name: Contoso.App, publisher: CN=Contoso, version: 1.0.0.0}
"#;

    fn pool(idp: &str, location: &str, os: &[&str]) -> PoolFacts {
        PoolFacts {
            name: "hp".into(),
            field: "HostPoolAssignment/a spec.hostPools[0]".into(),
            location: location.into(),
            identity_provider: Some(idp.into()),
            hosts: os
                .iter()
                .map(|v| classify(&VmRead::NoVm, Some(v)))
                .collect(),
            has_other_feature: false,
        }
    }

    fn reasons(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.reason).collect()
    }

    const WIN11: &str = "10.0.22631.4602";
    const WIN10: &str = "10.0.19045.5247";
    const SERVER: &str = "10.0.20348.2966";
    /// Windows Server 2025 and Windows 11 24H2.
    const BUILD_26100: &str = "10.0.26100.2894";

    #[test]
    fn a_clean_package_has_no_findings() {
        assert!(
            validate(
                &spec(BASE),
                &[pool("EntraID", "westeurope", &[WIN11])],
                None,
                jiff::Timestamp::now()
            )
            .is_empty()
        );
    }

    #[test]
    fn identity_providers_follow_the_mode() {
        let now = jiff::Timestamp::now();
        assert_eq!(
            reasons(&validate(
                &spec(BASE),
                &[pool("EntraDS", "westeurope", &[])],
                None,
                now
            )),
            ["IdentityProviderNotSupported"]
        );
        let msix = spec(&format!("{BASE}mode: MsixAppAttach\n"));
        assert_eq!(
            reasons(&validate(
                &msix,
                &[pool("EntraID", "westeurope", &[])],
                None,
                now
            )),
            ["IdentityProviderNotSupported"]
        );
        assert!(validate(&msix, &[pool("ADDS", "westeurope", &[])], None, now).is_empty());
    }

    #[test]
    fn regions_must_match_and_the_message_names_both() {
        let f = validate(
            &spec(BASE),
            &[pool("ADDS", "northeurope", &[])],
            None,
            jiff::Timestamp::now(),
        );
        assert_eq!(reasons(&f), ["RegionMismatch"]);
        assert!(f[0].message.contains("northeurope") && f[0].message.contains("spec.location"));
        // ARM's spelling of the region the spec names in words is the same region.
        let spaced = spec(&BASE.replace("westeurope", "West Europe"));
        assert!(
            validate(
                &spaced,
                &[pool("ADDS", "westeurope", &[])],
                None,
                jiff::Timestamp::now()
            )
            .is_empty()
        );
    }

    #[test]
    fn image_formats_warn_where_the_seed_advises_against_them() {
        let now = jiff::Timestamp::now();
        assert_eq!(
            reasons(&validate(
                &spec(BASE),
                &[pool("ADDS", "westeurope", &[WIN11, WIN10])],
                None,
                now
            )),
            ["CimFSNeedsWindows11"]
        );
        let vhd = spec(&BASE.replace("a.cim", "a.vhd"));
        assert_eq!(
            reasons(&validate(
                &vhd,
                &[pool("ADDS", "westeurope", &[WIN10])],
                None,
                now
            )),
            ["VhdNotRecommended"]
        );
    }

    #[test]
    fn a_root_the_hosts_do_not_trust_is_refused_naming_it_and_the_declared_roots() {
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let with_root = |root: &str| {
            spec(&format!(
                "{BASE}certificate: {{subject: CN=Contoso, expiry: '2027-05-01T00:00:00Z', root: {root}}}\n"
            ))
        };
        let ca = "A".repeat(40);
        let trust = TrustView::Roots {
            source: "ConfigMap appattach-system/appattach-trusted-roots".into(),
            roots: vec![("CN=Contoso Root, O=Contoso".into(), ca.clone())],
        };
        let check = |s: &AppAttachPackageSpec, t: &TrustView| {
            let f = validate(s, &[], Some(t), now);
            (
                reasons(&f),
                f.iter().map(|f| f.message.clone()).collect::<Vec<_>>(),
            )
        };
        // By thumbprint (any case), or by subject when no thumbprint is given.
        let by_thumbprint = with_root(&format!(
            "{{subject: CN=Other, thumbprint: {}}}",
            ca.to_lowercase()
        ));
        assert_eq!(check(&by_thumbprint, &trust).0, Vec::<&str>::new());
        let by_subject = with_root("{subject: 'cn=Contoso Root,o=Contoso'}");
        assert_eq!(check(&by_subject, &trust).0, Vec::<&str>::new());
        // A root not declared: an error naming it, where the roots are, and what to do.
        let other = with_root(&format!(
            "{{subject: CN=Fabrikam Root, thumbprint: {}}}",
            "B".repeat(40)
        ));
        let (r, m) = check(&other, &trust);
        assert_eq!(r, ["CertificateUntrusted"]);
        assert!(
            m[0].contains("CN=Fabrikam Root (thumbprint BBBB"),
            "{}",
            m[0]
        );
        assert!(m[0].contains("ConfigMap appattach-system/appattach-trusted-roots: CN=Contoso Root, O=Contoso (AAAA"), "{}", m[0]);
        assert!(m[0].contains("CERT_E_UNTRUSTEDROOT"), "{}", m[0]);
        // No declared root to compare, or no declaration to read: said, not refused.
        let no_root = spec(&format!(
            "{BASE}certificate: {{subject: CN=Contoso, expiry: '2027-05-01T00:00:00Z'}}\n"
        ));
        assert_eq!(check(&no_root, &trust).0, ["CertificateRootUnknown"]);
        let gone = TrustView::Unavailable {
            source: "ConfigMap x/y".into(),
            why: "it does not exist".into(),
        };
        assert_eq!(check(&other, &gone).0, ["TrustedRootsUnavailable"]);
        // Nothing declared (no --trusted-roots), or no certificate in the spec: no check.
        assert!(validate(&other, &[], None, now).is_empty());
        assert!(validate(&spec(BASE), &[], Some(&trust), now).is_empty());
    }

    #[test]
    fn certificates_expire_unless_timestamped() {
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let expired = spec(&format!(
            "{BASE}certificate: {{subject: CN=Contoso, expiry: '2026-05-01T00:00:00Z'}}\n"
        ));
        assert_eq!(
            reasons(&validate(&expired, &[], None, now)),
            ["CertificateExpired"]
        );
        let stamped = spec(&format!(
            "{BASE}certificate: {{subject: CN=Contoso, expiry: '2026-05-01T00:00:00Z', timestamped: true}}\n"
        ));
        assert!(validate(&stamped, &[], None, now).is_empty());
        let soon = spec(&format!(
            "{BASE}certificate: {{subject: CN=Contoso, expiry: '2026-06-20T00:00:00Z'}}\n"
        ));
        assert_eq!(
            reasons(&validate(&soon, &[], None, now)),
            ["CertificateExpiresSoon"]
        );
    }

    #[test]
    fn too_many_session_hosts_on_one_image_warn_about_share_handles() {
        let hosts: Vec<&str> = vec![WIN11; 2_001];
        assert_eq!(
            reasons(&validate(
                &spec(BASE),
                &[pool("ADDS", "westeurope", &hosts)],
                None,
                jiff::Timestamp::now()
            )),
            ["ShareHandleLimit"]
        );
    }

    #[test]
    fn errors_come_before_warnings() {
        let vhd = spec(&BASE.replace("a.cim", "a.vhd"));
        let f = validate(
            &vhd,
            &[pool("EntraDS", "westeurope", &[])],
            None,
            jiff::Timestamp::now(),
        );
        assert_eq!(
            reasons(&f),
            ["IdentityProviderNotSupported", "VhdNotRecommended"]
        );
    }

    /// A pool of these session hosts: each a VM read as `vm` (its image and licence), on
    /// this build.
    fn pool_of(hosts: &[(VmRead, &str)]) -> PoolFacts {
        PoolFacts {
            hosts: hosts
                .iter()
                .map(|(vm, os)| classify(vm, Some(os)))
                .collect(),
            ..pool("ADDS", "westeurope", &[])
        }
    }

    fn image(publisher: &str, offer: &str, sku: &str, license: Option<&str>) -> VmRead {
        VmRead::Listed(VmFacts {
            publisher: Some(publisher.into()),
            offer: Some(offer.into()),
            sku: Some(sku.into()),
            image_id: None,
            license_type: license.map(str::to_string),
        })
    }

    fn server_2025() -> VmRead {
        image(
            "MicrosoftWindowsServer",
            "WindowsServer",
            "2025-datacenter-azure-edition",
            None,
        )
    }

    fn windows_11() -> VmRead {
        image(
            "MicrosoftWindowsDesktop",
            "windows-11",
            "win11-24h2-avd",
            Some("Windows_Client"),
        )
    }

    #[test]
    fn windows_server_session_hosts_warn_and_name_the_pool_and_what_to_do() {
        let now = jiff::Timestamp::now();
        let f = validate(
            &spec(&BASE.replace("a.cim", "a.vhdx")),
            &[pool_of(&[
                (server_2025(), BUILD_26100),
                (server_2025(), BUILD_26100),
                (windows_11(), BUILD_26100),
            ])],
            None,
            now,
        );
        assert_eq!(reasons(&f), ["WindowsServerSessionHosts"]);
        let m = &f[0].message;
        assert!(
            m.starts_with("HostPoolAssignment/a spec.hostPools[0]: 2 of the 3 session host(s) of host pool hp run Windows Server")
                && m.contains("Windows client session hosts only")
                && m.contains("replace these hosts"),
            "{m}"
        );
        // Windows client hosts on the same build warn of nothing.
        assert!(
            validate(
                &spec(BASE),
                &[pool_of(&[(windows_11(), BUILD_26100)])],
                None,
                now
            )
            .is_empty()
        );
        // MSIX app attach: the seed restricts app attach only.
        let msix = spec(&format!("{BASE}mode: MsixAppAttach\n").replace("a.cim", "a.vhdx"));
        assert!(
            validate(
                &msix,
                &[pool_of(&[(server_2025(), BUILD_26100)])],
                None,
                now
            )
            .is_empty()
        );
    }

    #[test]
    fn cimfs_on_windows_server_2025_is_not_windows_11_despite_its_build() {
        let now = jiff::Timestamp::now();
        assert_eq!(
            reasons(&validate(
                &spec(BASE),
                &[pool_of(&[
                    (server_2025(), BUILD_26100),
                    (windows_11(), BUILD_26100)
                ])],
                None,
                now
            )),
            ["WindowsServerSessionHosts", "CimFSNeedsWindows11"]
        );
        let f = validate(
            &spec(&format!("{BASE}mode: MsixAppAttach\n")),
            &[pool_of(&[(server_2025(), BUILD_26100)])],
            None,
            now,
        );
        assert_eq!(reasons(&f), ["CimFSNeedsWindows11"]);
        assert!(
            f[0].message.contains("1 session host(s) of host pool hp"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn hosts_of_unknown_kind_are_judged_by_their_build_and_said_once_per_pool() {
        let now = jiff::Timestamp::now();
        let denied = VmRead::Unreadable {
            resource_group: "rg-hosts".into(),
            status: 403,
            code: "AuthorizationFailed".into(),
        };
        let custom = VmRead::Listed(VmFacts {
            image_id: Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i".into()),
            ..VmFacts::default()
        });
        let f = validate(
            &spec(BASE),
            &[pool_of(&[
                (denied.clone(), BUILD_26100),
                (denied.clone(), BUILD_26100),
                (custom, BUILD_26100),
                // Build 20348 tells without the VM: Windows Server 2022.
                (denied.clone(), SERVER),
                (VmRead::NotReadYet, BUILD_26100),
            ])],
            None,
            now,
        );
        // Unknown hosts on build 26100 are taken for Windows 11 for CimFS, as before.
        assert_eq!(
            reasons(&f),
            [
                "WindowsServerSessionHosts",
                "CimFSNeedsWindows11",
                "SessionHostOsUnknown"
            ]
        );
        assert!(
            f[1].message.contains("1 session host(s)"),
            "{}",
            f[1].message
        );
        let note = &f[2];
        assert_eq!(note.severity, Severity::Info);
        assert!(
            note.message.contains("whether 3 session host(s) of host pool hp run Windows Server is not known")
                && note.message.contains("2 because the controller's identity cannot read Microsoft.Compute/virtualMachines in resource group rg-hosts")
                && note.message.contains("Microsoft.Compute/virtualMachines/read")
                && note.message.contains("1 because their VMs' image"),
            "{}",
            note.message
        );
        // Nothing to say of hosts whose kind would change nothing: MSIX app attach, VHDX.
        let msix = spec(&format!("{BASE}mode: MsixAppAttach\n").replace("a.cim", "a.vhdx"));
        assert!(validate(&msix, &[pool_of(&[(denied, BUILD_26100)])], None, now).is_empty());
    }

    #[test]
    fn windows_11_is_told_by_its_build() {
        assert!(is_windows_11(WIN11));
        assert!(!is_windows_11(SERVER));
        assert!(!is_windows_11("10.0.19045.5247"));
        assert!(!is_windows_11("garbage"));
    }
}
