//! Validation the API server cannot do: the package's spec against the backend's world
//! (host pools, their region, identity provider and session hosts) and the clock. Pure.

use crate::resources::{AppAttachPackageSpec, ImageFormat, PackageMode};

/// Azure Files allows this many open handles per file; one session host holds one handle
/// per image file.
pub const HANDLES_PER_FILE_LIMIT: usize = 2_000;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
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
    /// `osVersion` of each session host.
    pub host_os_versions: Vec<String>,
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

/// Checks a package against its host pools and the time now.
pub fn validate(
    spec: &AppAttachPackageSpec,
    pools: &[PoolFacts],
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
    let hosts: usize = pools.iter().map(|p| p.host_os_versions.len()).sum();
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
    let others = pool
        .host_os_versions
        .iter()
        .filter(|v| !is_windows_11(v))
        .count();
    if format == Some(ImageFormat::CimFS) && others > 0 {
        out.push(Finding::warning(
            "CimFSNeedsWindows11",
            format!(
                "spec.image.path is a CimFS image, but {others} session host(s) of host pool {} do not run Windows 11; CimFS is recommended on Windows 11 only",
                pool.name
            ),
        ));
    }
    out
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
            host_os_versions: os.iter().map(|s| s.to_string()).collect(),
            has_other_feature: false,
        }
    }

    fn reasons(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.reason).collect()
    }

    const WIN11: &str = "10.0.22631.4602";
    const SERVER: &str = "10.0.20348.2966";

    #[test]
    fn a_clean_package_has_no_findings() {
        assert!(
            validate(
                &spec(BASE),
                &[pool("EntraID", "westeurope", &[WIN11])],
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
                now
            )),
            ["IdentityProviderNotSupported"]
        );
        let msix = spec(&format!("{BASE}mode: MsixAppAttach\n"));
        assert_eq!(
            reasons(&validate(&msix, &[pool("EntraID", "westeurope", &[])], now)),
            ["IdentityProviderNotSupported"]
        );
        assert!(validate(&msix, &[pool("ADDS", "westeurope", &[])], now).is_empty());
    }

    #[test]
    fn regions_must_match_and_the_message_names_both() {
        let f = validate(
            &spec(BASE),
            &[pool("ADDS", "northeurope", &[])],
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
                &[pool("ADDS", "westeurope", &[WIN11, SERVER])],
                now
            )),
            ["CimFSNeedsWindows11"]
        );
        let vhd = spec(&BASE.replace("a.cim", "a.vhd"));
        assert_eq!(
            reasons(&validate(
                &vhd,
                &[pool("ADDS", "westeurope", &[SERVER])],
                now
            )),
            ["VhdNotRecommended"]
        );
    }

    #[test]
    fn certificates_expire_unless_timestamped() {
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let expired = spec(&format!(
            "{BASE}certificate: {{subject: CN=Contoso, expiry: '2026-05-01T00:00:00Z'}}\n"
        ));
        assert_eq!(
            reasons(&validate(&expired, &[], now)),
            ["CertificateExpired"]
        );
        let stamped = spec(&format!(
            "{BASE}certificate: {{subject: CN=Contoso, expiry: '2026-05-01T00:00:00Z', timestamped: true}}\n"
        ));
        assert!(validate(&stamped, &[], now).is_empty());
        let soon = spec(&format!(
            "{BASE}certificate: {{subject: CN=Contoso, expiry: '2026-06-20T00:00:00Z'}}\n"
        ));
        assert_eq!(
            reasons(&validate(&soon, &[], now)),
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
            jiff::Timestamp::now(),
        );
        assert_eq!(
            reasons(&f),
            ["IdentityProviderNotSupported", "VhdNotRecommended"]
        );
    }

    #[test]
    fn windows_11_is_told_by_its_build() {
        assert!(is_windows_11(WIN11));
        assert!(!is_windows_11(SERVER));
        assert!(!is_windows_11("10.0.19045.5247"));
        assert!(!is_windows_11("garbage"));
    }
}
