//! RemoteApp publishing. The seed: *for a RemoteApp application group, the app attach
//! application must be added to the application group*. Each host pool of an assignment
//! names the RemoteApp groups that publish the package's applications; the controller
//! keeps one `applications` resource per group and application, pointing at the package
//! family and application id of the version that host pool runs, so a rollout keeps every
//! published application working on every pool at every step (a version with another
//! family name is published again, delete then create, when its pool switches: the
//! service does not change an application's family or application id in place).
//!
//! ARM applications carry no tags: the controller's applications have a name derived from
//! the object and the application id ([`naming::application_name`]) and a description
//! naming their owner ([`APPLICATION_OWNER`]). An application without that description is
//! never changed or removed.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::super::observe::{BackendView, GroupView, Observation};
use super::super::validate::{Finding, Severity};
use super::holdings::{Holdings, leaf};
use super::{Steps, Subject, Write, project, report};
use crate::arm::models::{
    Application, ApplicationGroupType, ApplicationProperties, CommandLineSetting,
    RemoteApplicationType, Resource,
};
use crate::backend::snapshot::{APPLICATION_OWNER, application_name, application_owner};
use crate::domain::naming;
use crate::resources::{PackageMode, RemoteAppGroupRef};

/// What the controller checks of the RemoteApp groups the assignments name: each exists,
/// is a RemoteApp group of its host pool, names applications the package has, and no
/// application made elsewhere holds the name the controller would give its own.
pub(super) fn check(obs: &Observation) -> Vec<Finding> {
    let mut out = vec![];
    let spec = &obs.package.spec;
    let ids: Vec<&str> = spec
        .package
        .applications
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    let key = obs.key();
    for a in &obs.inputs.host_pool_assignments {
        for (i, hp) in a.spec.host_pools.iter().enumerate() {
            for (j, g) in hp.remote_app_groups.iter().enumerate() {
                let field = format!(
                    "HostPoolAssignment/{} spec.hostPools[{i}].remoteAppGroups[{j}]",
                    a.name_any()
                );
                if ids.is_empty() {
                    out.push(error(
                        "NoApplicationsToPublish",
                        format!(
                            "{field}: spec.package.applications of AppAttachPackage {} is empty, so there is nothing to publish in RemoteApp group {}; fill it with `appattach inspect IMAGE`",
                            obs.package.name_any(),
                            g.name
                        ),
                    ));
                }
                for (k, app) in g.applications.iter().enumerate() {
                    if !ids.is_empty() && !ids.iter().any(|i| i.eq_ignore_ascii_case(&app.id)) {
                        out.push(error(
                            "ApplicationNotInPackage",
                            format!(
                                "{field}.applications[{k}].id: the package has no application {}; its applications are {}: fix the id, or fill spec.package.applications with `appattach inspect IMAGE`",
                                app.id,
                                ids.join(", ")
                            ),
                        ));
                    }
                }
                if let Some(view) = &obs.backend {
                    let pool_id = obs.scope.host_pool_id(&hp.name);
                    out.extend(check_group(obs, view, &field, &pool_id, &hp.name, g, &key));
                }
            }
        }
    }
    out
}

/// One named group, against the backend.
fn check_group(
    obs: &Observation,
    view: &BackendView,
    field: &str,
    pool_id: &str,
    pool_name: &str,
    g: &RemoteAppGroupRef,
    key: &str,
) -> Vec<Finding> {
    let id = obs.scope.application_group_id(&g.name);
    let Some(group) = view
        .app_groups
        .iter()
        .find(|v| v.id.eq_ignore_ascii_case(&id))
    else {
        // A missing host pool is reported on its own.
        let pool_missing = view.missing.iter().any(|m| m.name == pool_name);
        return if pool_missing {
            vec![]
        } else {
            vec![error(
                "ApplicationGroupNotFound",
                format!(
                    "{field}.name: application group {} was not found in the backend; fix the name, or create a RemoteApp application group for host pool {pool_name}",
                    g.name
                ),
            )]
        };
    };
    let mut out = vec![];
    if group.kind != ApplicationGroupType::RemoteApp {
        out.push(error(
            "ApplicationGroupNotRemoteApp",
            format!(
                "{field}.name: {} is a Desktop application group; its users get the package without publishing: remove it from remoteAppGroups, or name a RemoteApp group",
                g.name
            ),
        ));
    }
    if !group.pool_id.eq_ignore_ascii_case(pool_id) {
        out.push(error(
            "ApplicationGroupOfAnotherHostPool",
            format!(
                "{field}.name: application group {} belongs to host pool {}, not {pool_name}; name it under that host pool, or name a RemoteApp group of {pool_name}",
                g.name,
                leaf(&group.pool_id)
            ),
        ));
    }
    for app in &obs.package.spec.package.applications {
        let name = naming::application_name(key, &app.id);
        if let Some(taken) = group.applications.iter().find(|a| {
            application_name(a).eq_ignore_ascii_case(&name) && application_owner(a) != Some(key)
        }) {
            out.push(error(
                "ApplicationNameTaken",
                format!(
                    "{field}.name: application group {} already holds an application named {name}, made outside this controller{}; rename or remove it (the controller never changes applications it did not make)",
                    g.name,
                    application_owner(taken)
                        .map(|o| format!(" (it names {o} as its owner)"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    out
}

fn error(reason: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        reason,
        message,
    }
}

/// Adds the publishing writes to a pass's steps: the applications the named groups want
/// for the version each host pool runs once the steps' writes are done, and the removal
/// of this object's applications nobody names any more. Removals come first; new and
/// changed applications after the package writes, so the family they name is on the pool.
pub(super) fn pass(s: &Subject<'_>, steps: &mut Steps) {
    // Most packages publish nothing and hold no application: nothing to project.
    let declared = s
        .obs
        .inputs
        .host_pool_assignments
        .iter()
        .flat_map(|a| &a.spec.host_pools)
        .any(|h| !h.remote_app_groups.is_empty());
    let holds = s
        .view
        .app_groups
        .iter()
        .flat_map(|g| &g.applications)
        .any(|a| application_owner(a) == Some(s.key.as_str()));
    if !declared && !holds {
        return;
    }
    let after = project(s.view, &s.obs.scope, &steps.writes);
    let held = report::holdings(s, &after, steps.memory.rollout.as_ref());
    let wanted = wanted(s, &after, &held);
    let (removals, puts) = difference(&s.key, &after.app_groups, &wanted);
    if removals.is_empty() && puts.is_empty() {
        return;
    }
    let mut writes = removals;
    writes.append(&mut steps.writes);
    writes.extend(puts);
    steps.writes = writes;
}

/// Deleting the package: every application it published goes.
pub(super) fn remove_all(s: &Subject<'_>) -> Vec<Write> {
    difference(&s.key, &s.view.app_groups, &BTreeMap::new()).0
}

/// Group id (lower case) and application name.
type Slot = (String, String);

/// The applications the assignments want, by group and name, for what `after` holds.
fn wanted(s: &Subject<'_>, after: &BackendView, held: &Holdings) -> BTreeMap<Slot, Application> {
    let mut out = BTreeMap::new();
    for a in &s.obs.inputs.host_pool_assignments {
        for hp in &a.spec.host_pools {
            let pool_id = s.obs.scope.host_pool_id(&hp.name);
            let Some(running) = running(s, after, held, &pool_id) else {
                continue;
            };
            for g in &hp.remote_app_groups {
                let group_id = s.obs.scope.application_group_id(&g.name);
                let Some(group) = after
                    .app_groups
                    .iter()
                    .find(|v| v.id.eq_ignore_ascii_case(&group_id))
                else {
                    continue;
                };
                for (app_id, friendly) in &running.apps {
                    let chosen = if g.applications.is_empty() {
                        None
                    } else {
                        match g
                            .applications
                            .iter()
                            .find(|c| c.id.eq_ignore_ascii_case(app_id))
                        {
                            Some(c) => Some(c),
                            None => continue,
                        }
                    };
                    // An application made elsewhere that already publishes this one is
                    // left as it is, and none of ours is added beside it.
                    let elsewhere = group.applications.iter().any(|x| {
                        application_owner(x).is_none()
                            && same_app(&x.properties, &running.family, app_id)
                    });
                    if elsewhere {
                        continue;
                    }
                    let name = naming::application_name(&s.key, app_id);
                    let props = ApplicationProperties {
                        command_line_setting: CommandLineSetting::DoNotAllow,
                        application_type: Some(RemoteApplicationType::MsixApplication),
                        msix_package_family_name: Some(running.family.clone()),
                        msix_package_application_id: Some(app_id.clone()),
                        object_id: None,
                        description: Some(format!("{APPLICATION_OWNER}{}", s.key)),
                        friendly_name: chosen
                            .and_then(|c| c.display_name.clone())
                            .or_else(|| friendly.clone())
                            .or_else(|| Some(app_id.clone())),
                        file_path: None,
                        command_line_arguments: None,
                        show_in_portal: None,
                        icon_path: chosen.and_then(|c| c.icon_path.clone()),
                        icon_index: chosen.and_then(|c| c.icon_index),
                    };
                    out.insert(
                        (group.id.to_ascii_lowercase(), name.to_ascii_lowercase()),
                        Resource {
                            id: None,
                            name: Some(name),
                            resource_type: None,
                            location: None,
                            tags: None,
                            properties: props,
                        },
                    );
                }
            }
        }
    }
    out
}

fn same_app(p: &ApplicationProperties, family: &str, app_id: &str) -> bool {
    p.msix_package_family_name
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case(family))
        && p.msix_package_application_id
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(app_id))
}

/// What a host pool runs: the family and the applications (id, display name) of its
/// version.
struct Running {
    family: String,
    apps: Vec<(String, Option<String>)>,
}

fn running(
    s: &Subject<'_>,
    after: &BackendView,
    held: &Holdings,
    pool_id: &str,
) -> Option<Running> {
    let v = held.version_on(pool_id)?;
    let (family, apps) = match s.spec.mode {
        PackageMode::AppAttach => {
            let p = after
                .packages
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(&v.backend_name))?;
            let image = p.package.properties.image.as_ref()?;
            (
                image.package_family_name.clone()?,
                image.package_applications.clone().unwrap_or_default(),
            )
        }
        PackageMode::MsixAppAttach => {
            let pool = after
                .pools
                .iter()
                .find(|p| p.id.eq_ignore_ascii_case(pool_id))?;
            let m = pool.msix.iter().find(|m| {
                leaf(m.name.as_deref().unwrap_or_default()).eq_ignore_ascii_case(&v.backend_name)
            })?;
            (
                m.properties.package_family_name.clone()?,
                m.properties
                    .package_applications
                    .clone()
                    .unwrap_or_default(),
            )
        }
    };
    let mut seen = BTreeSet::new();
    let apps = apps
        .into_iter()
        .filter_map(|a| Some((a.app_id?, a.friendly_name)))
        .filter(|(id, _)| seen.insert(id.to_ascii_lowercase()))
        .collect();
    Some(Running { family, apps })
}

/// The writes from this object's applications in `groups` to `wanted`: removals, and the
/// creations and changes (an application whose family or application id changes is
/// deleted and created again, as the service allows those only at creation).
fn difference(
    key: &str,
    groups: &[GroupView],
    wanted: &BTreeMap<Slot, Application>,
) -> (Vec<Write>, Vec<Write>) {
    let mut removals = vec![];
    let mut puts = vec![];
    let mut ours: BTreeMap<Slot, (&GroupView, &Application)> = BTreeMap::new();
    for g in groups {
        for a in g
            .applications
            .iter()
            .filter(|a| application_owner(a) == Some(key))
        {
            let slot = (
                g.id.to_ascii_lowercase(),
                application_name(a).to_ascii_lowercase(),
            );
            ours.insert(slot, (g, a));
        }
    }
    for (slot, (g, a)) in &ours {
        if !wanted.contains_key(slot) {
            removals.push(Write::DeleteApplication {
                group_id: g.id.clone(),
                name: application_name(a).to_string(),
            });
        }
    }
    for (slot, want) in wanted {
        let group_id = groups
            .iter()
            .find(|g| g.id.eq_ignore_ascii_case(&slot.0))
            .map_or_else(|| slot.0.clone(), |g| g.id.clone());
        let name = want.name.clone().unwrap_or_default();
        match ours.get(slot) {
            Some((_, have)) if !differs(&have.properties, &want.properties) => {}
            Some((_, have)) => {
                if recreate(&have.properties, &want.properties) {
                    puts.push(Write::DeleteApplication {
                        group_id: group_id.clone(),
                        name: name.clone(),
                    });
                }
                puts.push(Write::PutApplication {
                    group_id,
                    name,
                    body: want.clone(),
                });
            }
            None => puts.push(Write::PutApplication {
                group_id,
                name,
                body: want.clone(),
            }),
        }
    }
    (removals, puts)
}

/// Whether the fields the controller sets differ (the service adds others of its own).
pub(crate) fn differs(have: &ApplicationProperties, want: &ApplicationProperties) -> bool {
    recreate(have, want)
        || have.command_line_setting != want.command_line_setting
        || have.description != want.description
        || have.friendly_name != want.friendly_name
        || have.icon_path != want.icon_path
        || have.icon_index.unwrap_or(0) != want.icon_index.unwrap_or(0)
}

/// Whether a change needs the application made again: its type, family name or
/// application id, which the service sets only at creation.
fn recreate(have: &ApplicationProperties, want: &ApplicationProperties) -> bool {
    let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    };
    have.application_type != want.application_type
        || !same(
            &have.msix_package_family_name,
            &want.msix_package_family_name,
        )
        || !same(
            &have.msix_package_application_id,
            &want.msix_package_application_id,
        )
}

/// The applications this object published, per host pool (lower-case id), as `view`
/// holds them.
pub(crate) fn published_on(key: &str, view: &BackendView) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for g in &view.app_groups {
        let n = g
            .applications
            .iter()
            .filter(|a| application_owner(a) == Some(key))
            .count();
        if n > 0 {
            *out.entry(g.pool_id.to_ascii_lowercase()).or_default() += n;
        }
    }
    out
}
