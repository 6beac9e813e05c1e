//! `appattach migrate msix --host-pool NAME`: the MSIX app attach packages of a host pool,
//! as the AppAttachPackage, HostPoolAssignment and UserAssignment manifests that move
//! them to app attach, with the users and groups of the pool's application groups.

use anyhow::Context;

use crate::arm::models::{MsixPackage, PrincipalType};
use crate::backend::Backend;
use crate::domain::naming;
use crate::resources::{
    AppAttachPackage, AppAttachPackageSpec, Application, HostPoolAssignment,
    HostPoolAssignmentSpec, HostPoolRef, ImageSpec, PackageDependency, PackageRef, PackageSpec,
    PackageType, PrincipalKind, PrincipalRef, UserAssignment, UserAssignmentSpec,
};

/// Arguments of `appattach migrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print manifests that move a host pool's MSIX app attach packages to app attach.
    Msix(MsixArgs),
}

/// Arguments of `appattach migrate msix`.
#[derive(clap::Args, Debug)]
pub struct MsixArgs {
    /// The host pool whose MSIX packages to migrate.
    #[arg(long)]
    host_pool: String,
    /// Namespace of the printed objects.
    #[arg(long, short = 'n', default_value = "avd-apps")]
    namespace: String,
    /// ARM endpoint (an emulator's URL); with --cloud, the cloud's.
    #[arg(long, env = "APPATTACH_ARM_ENDPOINT")]
    arm_endpoint: Option<String>,
    #[command(flatten)]
    azure: super::azure_args::AzureArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let Command::Msix(a) = args.command;
    let client = a.azure.client(a.arm_endpoint.as_deref(), None)?;
    let pool_id = client.host_pool_id(&a.host_pool);
    let pool = client.get_host_pool(&pool_id).await?.with_context(|| {
        format!(
            "--host-pool {}: no such host pool in the resource group",
            a.host_pool
        )
    })?;
    let packages = client.list_msix_packages(&pool_id).await?;
    let mut principals = Vec::new();
    for group in client.list_application_groups().await? {
        if !group
            .properties
            .host_pool_arm_path
            .eq_ignore_ascii_case(&pool_id)
        {
            continue;
        }
        let Some(scope) = group.id else { continue };
        for r in client.list_role_assignments(&scope).await? {
            let p = &r.properties;
            if r.is_desktop_virtualization_user() {
                principals.push((
                    p.principal_id.to_ascii_lowercase(),
                    p.principal_type.unwrap_or(PrincipalType::User),
                ));
            }
        }
    }
    principals.sort();
    principals.dedup();
    let yaml = manifests(
        &a.host_pool,
        pool.location.as_deref().unwrap_or_default(),
        &packages,
        &principals,
        &a.namespace,
    )?;
    super::out(&yaml)?;
    eprintln!(
        "appattach: {} MSIX package(s) on {}, {} principal(s) from its application groups. Fill in each spec.package.publisher (run `appattach inspect` on the image), apply, check the packages are Ready, then remove the MSIX packages from the host pool: a host pool never mixes the two features.",
        packages.len(),
        a.host_pool,
        principals.len()
    );
    Ok(())
}

/// The manifests, as one YAML stream: per MSIX package an AppAttachPackage, and one
/// HostPoolAssignment and one UserAssignment pointing at it.
pub fn manifests(
    pool: &str,
    location: &str,
    packages: &[MsixPackage],
    principals: &[(String, PrincipalType)],
    namespace: &str,
) -> anyhow::Result<String> {
    let mut out = String::new();
    for m in packages {
        let p = &m.properties;
        let full = m
            .name
            .as_deref()
            .and_then(|n| n.rsplit('/').next())
            .unwrap_or_default()
            .to_string();
        let package_name = p
            .package_name
            .clone()
            .unwrap_or_else(|| full.split('_').next().unwrap_or_default().to_string());
        let name = naming::backend_name("", &package_name)
            .trim_start_matches('-')
            .to_string();
        let image = p.image_path.clone().unwrap_or_default();
        let mut pkg = AppAttachPackage::new(
            &name,
            AppAttachPackageSpec {
                mode: Default::default(),
                location: location.to_string(),
                image: ImageSpec {
                    path: image.clone(),
                    format: None,
                },
                package: PackageSpec {
                    package_type: if image.to_ascii_lowercase().contains("bundle") {
                        PackageType::MsixBundle
                    } else {
                        PackageType::Msix
                    },
                    name: package_name.clone(),
                    publisher: "CN=FILL-IN-FROM-THE-MANIFEST".into(),
                    version: p.version.clone().unwrap_or_default(),
                    architecture: Default::default(),
                    family_name: p.package_family_name.clone(),
                    full_name: (!full.is_empty()).then(|| full.clone()),
                    display_name: p.display_name.clone(),
                    relative_path: p.package_relative_path.clone(),
                    applications: p
                        .package_applications
                        .iter()
                        .flatten()
                        .filter_map(|a| {
                            Some(Application {
                                id: a.app_id.clone()?,
                                display_name: a.friendly_name.clone(),
                            })
                        })
                        .collect(),
                    dependencies: p
                        .package_dependencies
                        .iter()
                        .flatten()
                        .filter_map(|d| {
                            Some(PackageDependency {
                                name: d.dependency_name.clone()?,
                                publisher: d.publisher.clone()?,
                                min_version: d.min_version.clone()?,
                            })
                        })
                        .collect(),
                },
                certificate: None,
                registration: if p.is_regular_registration == Some(true) {
                    crate::resources::Registration::LogonBlocking
                } else {
                    crate::resources::Registration::OnDemand
                },
                state: if p.is_active == Some(false) {
                    crate::resources::PackageState::Inactive
                } else {
                    crate::resources::PackageState::Active
                },
                health_check_on_staging_failure: Default::default(),
                rollout: Default::default(),
                suspend: false,
                target: None,
            },
        );
        pkg.metadata.namespace = Some(namespace.into());
        let mut pools = HostPoolAssignment::new(
            &name,
            HostPoolAssignmentSpec {
                package_ref: PackageRef { name: name.clone() },
                host_pools: vec![HostPoolRef {
                    name: pool.into(),
                    ring: 0,
                    remote_app_groups: vec![],
                }],
            },
        );
        pools.metadata.namespace = Some(namespace.into());
        let mut users = UserAssignment::new(
            &name,
            UserAssignmentSpec {
                package_ref: PackageRef { name: name.clone() },
                principals: principals
                    .iter()
                    .map(|(id, kind)| PrincipalRef {
                        kind: match kind {
                            PrincipalType::Group => PrincipalKind::Group,
                            _ => PrincipalKind::User,
                        },
                        name: id.clone(),
                        object_id: Some(id.clone()),
                    })
                    .collect(),
            },
        );
        users.metadata.namespace = Some(namespace.into());
        out.push_str(&format!(
            "# {full} from host pool {pool}: fill in spec.package.publisher from the package's manifest\n"
        ));
        let mut docs = vec![
            serde_yaml_ng::to_string(&pkg)?,
            serde_yaml_ng::to_string(&pools)?,
        ];
        if principals.is_empty() {
            out.push_str("# no user or group is assigned to the host pool's application groups: add a UserAssignment\n");
        } else {
            docs.push(serde_yaml_ng::to_string(&users)?);
        }
        for doc in docs {
            out.push_str("---\n");
            out.push_str(&doc);
        }
    }
    Ok(out)
}
