//! Session hosts staging images: each session host of a host pool stages every active
//! package the pool references, from the share, and reports the outcome in its
//! `AppAttachHealthCheck`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::store::Stored;
use super::{Inner, ShareMapping, arm_api, now};
use crate::arm::{ArmError, ResourceId, ResourceType};

/// One package staged (or not) on one session host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedPackage {
    /// ARM id of the package resource.
    pub package_id: String,
    /// Package version.
    pub version: String,
    /// Image path.
    pub image_path: String,
    /// Whether staging succeeded.
    pub staged: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A health report a session host made: what it staged, and where it falls in the order
/// of the emulator's writes. Tests judge a rollout's gate by these (a ring may switch only
/// after the hosts of the rings before it reported the new image staged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// The sequence number of the last write applied before the report.
    pub after: u64,
    /// When it reported (RFC 3339).
    pub at: String,
    /// The session host's id, lower-case.
    pub session_host: String,
    /// What it staged of each active package on its host pool.
    pub staged: Vec<StagedPackage>,
}

/// The health reports made, oldest first (the oldest go beyond [`REPORTS`]).
#[derive(Debug, Default)]
pub struct ReportLog {
    reports: std::collections::VecDeque<HealthReport>,
}

/// How many health reports the log keeps.
pub const REPORTS: usize = 10_000;

impl ReportLog {
    fn record(&mut self, report: HealthReport) {
        if self.reports.len() == REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back(report);
    }

    /// The reports kept, oldest first.
    pub fn reports(&self) -> Vec<HealthReport> {
        self.reports.iter().cloned().collect()
    }
}

/// The outcome of a staging run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageSummary {
    /// Session hosts that staged.
    pub session_hosts: usize,
    /// Session hosts whose health check failed.
    pub failed_hosts: Vec<String>,
}

/// Named values holding per-host staging faults: `stagingfault/{session host id, lower
/// case}` → error. Keyed by the id, so two pools may each have a host of the same name.
pub const FAULT_PREFIX: &str = "stagingfault/";
/// The status of a session host whose VM is shut down (`/_emulator/power`).
pub const SHUTDOWN: &str = "Shutdown";

/// How many session hosts a refusal lists before it only counts the rest.
const LISTED_HOSTS: usize = 20;

/// Finds the one session host a staging fault names, the way ARM names it: its resource
/// name (`fin-0.contoso.com`, as in the world file), `hostPool/sessionHost` (ARM's `name`
/// property) or its resource id, in any case; or its short host name (`fin-0`) when only
/// one session host has it. A name that matches none, or several, is refused with the
/// session hosts that exist, never taken as a fault that can never fire.
pub fn fault_target(inner: &Inner, name: &str) -> Result<ResourceId, ArmError> {
    if name.trim().is_empty() {
        return Err(ArmError::invalid(
            "sessionHost is required: give the session host's name as in the world file (for example fin-0.contoso.com).",
        ));
    }
    let hosts: Vec<ResourceId> = inner
        .store
        .all(ResourceType::SessionHost)
        .map(Stored::resource_id)
        .collect();
    let exact: Vec<&ResourceId> = hosts
        .iter()
        .filter(|id| {
            id.leaf().eq_ignore_ascii_case(name)
                || id.arm_name().eq_ignore_ascii_case(name)
                || id.to_string().eq_ignore_ascii_case(name)
        })
        .collect();
    let matches = if exact.is_empty() && !name.contains(['.', '/']) {
        hosts
            .iter()
            .filter(|id| {
                id.leaf()
                    .split('.')
                    .next()
                    .is_some_and(|short| short.eq_ignore_ascii_case(name))
            })
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ArmError::not_found(format!(
            "session host '{name}' was not found; the session hosts are {}",
            listed(hosts.iter())
        ))),
        several => Err(ArmError::invalid(format!(
            "session host '{name}' names {} session hosts ({}); name one as hostPool/sessionHost",
            several.len(),
            listed(several.iter().copied())
        ))),
    }
}

/// Session hosts as `hostPool/sessionHost`, the first [`LISTED_HOSTS`] of them.
fn listed<'a>(hosts: impl ExactSizeIterator<Item = &'a ResourceId>) -> String {
    let total = hosts.len();
    if total == 0 {
        return "none: the world has no session hosts".into();
    }
    let mut text = hosts
        .take(LISTED_HOSTS)
        .map(ResourceId::arm_name)
        .collect::<Vec<_>>()
        .join(", ");
    if total > LISTED_HOSTS {
        text.push_str(&format!(" and {} more", total - LISTED_HOSTS));
    }
    text
}

struct ActivePackage {
    id: String,
    version: String,
    image_path: String,
    policy: Option<String>,
}

/// What staging found of the images it read: by local file, its size and modification
/// time when read, and whether a session host stages it (else the error it reports).
#[derive(Debug, Default)]
pub struct ImageChecks {
    read: std::collections::HashMap<std::path::PathBuf, ImageCheck>,
}

/// One image read: its size and modification time then, and what a host makes of it.
#[derive(Debug, Clone)]
struct ImageCheck {
    len: u64,
    modified: Option<std::time::SystemTime>,
    result: Result<(), String>,
}

/// Checks that the image a UNC path names exists and is readable through a share mapping,
/// and that a session host would stage its packages. A CimFS image also needs at least
/// one `objectid_*` and one `region_*` file beside it. A VHDX or VHD image the emulator
/// can read is verified as a host verifies it (the package's signature, the digests it
/// carries, every file against the block map), once per version of the file, and refused
/// with the error a host reports; a file that is no image the emulator can read (the
/// tests' placeholders) is taken as staged.
pub fn check_image(
    shares: &[ShareMapping],
    images: &mut ImageChecks,
    unc: &str,
) -> Result<(), String> {
    check_file(shares, unc)?;
    let lower = unc.to_ascii_lowercase();
    if !(lower.ends_with(".vhdx") || lower.ends_with(".vhd")) {
        return Ok(());
    }
    let local = shares
        .iter()
        .find_map(|s| s.resolve(unc))
        .ok_or_else(|| format!("no share is mapped for {unc}"))?;
    let meta = std::fs::metadata(&local).map_err(|e| format!("cannot open {unc}: {e}"))?;
    let version = (meta.len(), meta.modified().ok());
    if let Some(c) = images.read.get(&local)
        && (c.len, c.modified) == version
    {
        return c.result.clone();
    }
    let result = match crate::inspect::image::read_image_file(&local) {
        Err(_) => Ok(()),
        Ok(contents) => contents
            .packages
            .iter()
            .find_map(|folder| {
                let v = crate::inspect::verify::verify_folder(
                    folder,
                    crate::inspect::verify::Against::nothing(),
                );
                v.problems.first().map(|p| {
                    format!(
                        "cannot stage {unc}: {} {}: {}: {}",
                        p.code, folder.relative_path, p.at, p.what
                    )
                })
            })
            .map_or(Ok(()), Err),
    };
    images.read.insert(
        local,
        ImageCheck {
            len: version.0,
            modified: version.1,
            result: result.clone(),
        },
    );
    result
}

/// Checks that the file a UNC path names exists through a share mapping (and a CimFS
/// image's file set).
fn check_file(shares: &[ShareMapping], unc: &str) -> Result<(), String> {
    let local = shares
        .iter()
        .find_map(|s| s.resolve(unc))
        .ok_or_else(|| format!("no share is mapped for {unc}"))?;
    std::fs::File::open(&local).map_err(|e| format!("cannot open {unc}: {e}"))?;
    if !local.is_file() {
        return Err(format!("{unc} is not a file"));
    }
    if unc.to_ascii_lowercase().ends_with(".cim") {
        let dir = local
            .parent()
            .ok_or_else(|| format!("{unc} has no folder"))?;
        let names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list the folder of {unc}: {e}"))?
            .filter_map(|e| {
                e.ok()
                    .map(|e| e.file_name().to_string_lossy().to_ascii_lowercase())
            })
            .collect();
        for prefix in ["objectid_", "region_"] {
            if !names.iter().any(|n| n.starts_with(prefix)) {
                return Err(format!(
                    "the CimFS image {unc} has no {prefix}* file beside it"
                ));
            }
        }
    }
    Ok(())
}

fn active_packages(inner: &Inner, pool: &ResourceId) -> Vec<ActivePackage> {
    let key = pool.key();
    let active = |v: &Value| v.as_bool() == Some(true);
    let mut out: Vec<ActivePackage> = arm_api::packages_on_pool(inner, &key)
        .filter(|s| active(&s.body["properties"]["image"]["isActive"]))
        .map(|s| ActivePackage {
            id: s.id.clone(),
            version: s.body["properties"]["image"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            image_path: s.body["properties"]["image"]["imagePath"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            policy: s.body["properties"]["failHealthCheckOnStagingFailure"]
                .as_str()
                .map(String::from),
        })
        .collect();
    out.extend(
        inner
            .store
            .list(ResourceType::MsixPackage, &format!("{pool}/"))
            .into_iter()
            .filter(|s| active(&s.body["properties"]["isActive"]))
            .map(|s| ActivePackage {
                id: s.id.clone(),
                version: s.body["properties"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                image_path: s.body["properties"]["imagePath"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                policy: None,
            }),
    );
    out
}

/// Stages every session host of one host pool (by name or id), or of all host pools.
pub fn stage(inner: &mut Inner, host_pool: Option<&str>) -> StageSummary {
    let pools: Vec<ResourceId> = inner
        .store
        .all(ResourceType::HostPool)
        .map(Stored::resource_id)
        .filter(|id| {
            host_pool.is_none_or(|p| {
                p.eq_ignore_ascii_case(id.leaf()) || p.eq_ignore_ascii_case(&id.to_string())
            })
        })
        .collect();
    let mut summary = StageSummary::default();
    for pool in pools {
        let packages = active_packages(inner, &pool);
        let hosts: Vec<(String, Value)> = inner
            .store
            .list(ResourceType::SessionHost, &format!("{pool}/"))
            .into_iter()
            .map(|s| (s.id.clone(), s.body.clone()))
            .collect();
        for (host_id, body) in hosts {
            summary.session_hosts += 1;
            let fault = inner
                .store
                .meta(&format!("{FAULT_PREFIX}{}", host_id.to_ascii_lowercase()))
                .and_then(Value::as_str)
                .map(String::from);
            if fault.as_deref() == Some("") || body["properties"]["status"] == SHUTDOWN {
                continue; // a host that does not report, or is off
            }
            let staged: Vec<StagedPackage> = packages
                .iter()
                .map(|p| {
                    let result = match &fault {
                        Some(e) => Err(format!("cannot stage {}: {e}", p.image_path)),
                        None => check_image(&inner.shares, &mut inner.images, &p.image_path),
                    };
                    StagedPackage {
                        package_id: p.id.clone(),
                        version: p.version.clone(),
                        image_path: p.image_path.clone(),
                        staged: result.is_ok(),
                        error: result.err(),
                    }
                })
                .collect();
            let counted: Vec<(&StagedPackage, &ActivePackage)> = staged
                .iter()
                .zip(&packages)
                .filter(|(s, p)| !s.staged && p.policy.as_deref() != Some("DoNotFail"))
                .collect();
            let record_key = format!("staging/{}", host_id.to_ascii_lowercase());
            let record = serde_json::to_value(&staged).expect("JSON");
            let unchanged = inner.store.meta(&record_key) == Some(&record);
            let was_unknown = body["properties"]["sessionHostHealthCheckResults"][0]["healthCheckResult"]
                == "Unknown";
            if !counted.is_empty() {
                summary.failed_hosts.push(host_id.clone());
            }
            if unchanged && !was_unknown {
                continue;
            }
            let (result, details) = if counted.is_empty() {
                (
                    "HealthCheckSucceeded",
                    json!({ "lastHealthCheckDateTime": now() }),
                )
            } else {
                let message = counted
                    .iter()
                    .map(|(s, _)| s.error.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    "HealthCheckFailed",
                    json!({ "message": message, "errorCode": 1, "lastHealthCheckDateTime": now() }),
                )
            };
            let status = if counted
                .iter()
                .any(|(_, p)| p.policy.as_deref() == Some("Unhealthy"))
            {
                "Unavailable"
            } else if !counted.is_empty() {
                "NeedsAssistance"
            } else {
                "Available"
            };
            let mut body = body;
            body["properties"]["sessionHostHealthCheckResults"] = json!([{
                "healthCheckName": "AppAttachHealthCheck",
                "healthCheckResult": result,
                "additionalFailureDetails": details,
            }]);
            if matches!(
                body["properties"]["status"].as_str(),
                Some("Available" | "NeedsAssistance" | "Unavailable")
            ) {
                body["properties"]["status"] = json!(status);
            }
            let id = ResourceId::parse(&host_id).expect("stored ids parse");
            inner.store.put(&id, body);
            inner.store.set_meta(&record_key, Some(record));
            let after = inner.writes.last_seq();
            inner.reports.record(HealthReport {
                after,
                at: now(),
                session_host: host_id.to_ascii_lowercase(),
                staged,
            });
        }
    }
    summary
}
