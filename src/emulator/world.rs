//! The simulated world the emulator starts from: host pools with their session hosts,
//! application groups with their members, and the directory of users and groups. Loaded
//! from YAML (`--world`).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The world file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct World {
    /// Subscription id the resources live in.
    #[serde(default = "default_subscription")]
    pub subscription: String,
    /// Resource group the resources live in.
    #[serde(default = "default_resource_group")]
    pub resource_group: String,
    /// Host pools and their session hosts.
    #[serde(default)]
    pub host_pools: Vec<WorldHostPool>,
    /// Application groups and who may use them.
    #[serde(default)]
    pub application_groups: Vec<WorldAppGroup>,
    /// Users and groups.
    #[serde(default)]
    pub directory: Directory,
    /// The Entra ID tenant the subscription trusts. When set, every ARM request must
    /// carry a bearer token of this tenant (see [`super::arm_api`]); when absent, ARM
    /// requests are not checked for a token of any tenant (only for the static `--token`,
    /// if one is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The applications (service principals) Entra ID knows, of this tenant or others:
    /// who may get a token from the emulator's token endpoint ([`super::entra`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Identity>,
    /// The object ids of the principals allowed to call ARM on this subscription; anyone
    /// with a valid token of the tenant when absent. Needs `tenantId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    /// The directory by name and object id, built on the first lookup (a world is read,
    /// then never changed): a sign-in or role assignment scanned every user before, which
    /// made a cold start of 50,000 users quadratic in the emulator.
    #[serde(skip)]
    lookup: DirectoryLookup,
}

/// Indexes of the users and groups by lower-case UPN or name and object id.
#[derive(Debug, Default)]
struct DirectoryLookup(std::sync::OnceLock<Lookups>);

#[derive(Debug)]
struct Lookups {
    users: std::collections::HashMap<String, usize>,
    groups: std::collections::HashMap<String, usize>,
}

/// A copy builds its own lookup: the copy may be changed before it is used.
impl Clone for DirectoryLookup {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Derived data: worlds are equal when their fields are.
impl PartialEq for DirectoryLookup {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn default_subscription() -> String {
    "00000000-0000-0000-0000-000000000000".to_string()
}

fn default_resource_group() -> String {
    "rg-avd".to_string()
}

/// Identity provider the session hosts of a pool are joined to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityProvider {
    /// Microsoft Entra ID.
    #[serde(rename = "EntraID")]
    EntraId,
    /// Active Directory Domain Services.
    #[serde(rename = "ADDS")]
    Adds,
    /// Microsoft Entra Domain Services.
    #[serde(rename = "EntraDS")]
    EntraDs,
}

impl IdentityProvider {
    /// The spelling in the world file and in the host pool's tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntraId => "EntraID",
            Self::Adds => "ADDS",
            Self::EntraDs => "EntraDS",
        }
    }
}

/// Operating system of a session host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Os {
    /// Windows 11 Enterprise (multi-session), 23H2.
    Windows11,
    /// Windows 11 Enterprise (multi-session), 24H2: build 26100, as Windows Server 2025's.
    #[serde(rename = "Windows11-24H2")]
    Windows11v24H2,
    /// Windows 10 Enterprise (multi-session), 22H2.
    Windows10,
    /// Windows Server 2022.
    #[serde(alias = "WindowsServer2022")]
    WindowsServer,
    /// Windows Server 2025: build 26100, as Windows 11 24H2's.
    WindowsServer2025,
}

impl Os {
    /// The `osVersion` a session host of this OS reports.
    pub fn os_version(self) -> &'static str {
        match self {
            Self::Windows11 => "10.0.22631.4602",
            Self::Windows11v24H2 => "10.0.26100.2894",
            Self::Windows10 => "10.0.19045.5247",
            Self::WindowsServer => "10.0.20348.2966",
            Self::WindowsServer2025 => "10.0.26100.2894",
        }
    }

    /// The marketplace image a VM of this OS is made from, by default.
    pub fn image(self) -> WorldImage {
        let (publisher, offer, sku) = match self {
            Self::Windows11 => ("MicrosoftWindowsDesktop", "windows-11", "win11-23h2-avd"),
            Self::Windows11v24H2 => ("MicrosoftWindowsDesktop", "windows-11", "win11-24h2-avd"),
            Self::Windows10 => ("MicrosoftWindowsDesktop", "windows-10", "win10-22h2-avd"),
            Self::WindowsServer => (
                "MicrosoftWindowsServer",
                "WindowsServer",
                "2022-datacenter-azure-edition",
            ),
            Self::WindowsServer2025 => (
                "MicrosoftWindowsServer",
                "WindowsServer",
                "2025-datacenter-azure-edition",
            ),
        };
        WorldImage {
            publisher: Some(publisher.into()),
            offer: Some(offer.into()),
            sku: Some(sku.into()),
            id: None,
        }
    }

    /// The licence type a VM of this OS declares, by default: `Windows_Client` for Windows
    /// client multi-session (as its licence requires), none for Windows Server
    /// (pay-as-you-go).
    pub fn license_type(self) -> Option<&'static str> {
        match self {
            Self::Windows11 | Self::Windows11v24H2 | Self::Windows10 => Some("Windows_Client"),
            Self::WindowsServer | Self::WindowsServer2025 => None,
        }
    }
}

/// The image a session host's VM is made from: a marketplace image (publisher, offer,
/// sku) or a gallery or managed image (`id`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorldImage {
    /// Marketplace publisher, e.g. `MicrosoftWindowsDesktop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Marketplace offer, e.g. `windows-11`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// Marketplace SKU, e.g. `win11-24h2-avd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// A gallery image version's or a managed image's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A host pool of the world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorldHostPool {
    /// Host pool name.
    pub name: String,
    /// Azure region.
    pub location: String,
    /// `Pooled` (default) or `Personal`.
    #[serde(default = "default_pool_type", rename = "type")]
    pub pool_type: String,
    /// Identity provider of its session hosts.
    pub identity_provider: IdentityProvider,
    /// Its session hosts.
    #[serde(default)]
    pub session_hosts: Vec<WorldSessionHost>,
    /// The resource group of its session hosts' virtual machines; the world's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_resource_group: Option<String>,
}

fn default_pool_type() -> String {
    "Pooled".to_string()
}

/// A session host of the world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorldSessionHost {
    /// Host name, e.g. `pilot-0.contoso.com`; its VM is named by its first label.
    pub name: String,
    /// Operating system.
    pub os: Os,
    /// The image of its VM; by default the marketplace image of `os`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<WorldImage>,
    /// The licence type of its VM (`Windows_Client`, `Windows_Server`). By default that
    /// of `os` when `image` is absent, and none when `image` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_type: Option<String>,
}

impl WorldSessionHost {
    /// The name of its VM: the first label of its host name.
    pub fn vm_name(&self) -> &str {
        self.name.split('.').next().unwrap_or(&self.name)
    }

    /// The image of its VM.
    pub fn vm_image(&self) -> WorldImage {
        self.image.clone().unwrap_or_else(|| self.os.image())
    }

    /// The licence type of its VM.
    pub fn vm_license_type(&self) -> Option<String> {
        match (&self.license_type, &self.image) {
            (Some(l), _) => Some(l.clone()),
            (None, Some(_)) => None,
            (None, None) => self.os.license_type().map(str::to_string),
        }
    }
}

/// A virtual machine of the world: a session host's.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldVm<'a> {
    /// Its resource group.
    pub resource_group: &'a str,
    /// Its region (its host pool's).
    pub location: &'a str,
    /// The session host it is.
    pub host: &'a WorldSessionHost,
}

/// An application group of the world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorldAppGroup {
    /// Application group name.
    pub name: String,
    /// Host pool it belongs to.
    pub host_pool: String,
    /// `Desktop` or `RemoteApp`.
    #[serde(rename = "type")]
    pub group_type: crate::arm::models::ApplicationGroupType,
    /// Users (UPN) and groups (name) that may use it.
    #[serde(default)]
    pub members: Vec<String>,
}

/// The directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Directory {
    /// Users.
    #[serde(default)]
    pub users: Vec<DirectoryUser>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<DirectoryGroup>,
}

/// A user of the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectoryUser {
    /// User principal name.
    pub upn: String,
    /// Object id (a GUID).
    pub object_id: String,
    /// Names of the groups the user is in.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A group of the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectoryGroup {
    /// Group name.
    pub name: String,
    /// Object id (a GUID).
    pub object_id: String,
}

/// An application of Entra ID: its service principal in a tenant, and how it signs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// The tenant (directory) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The service principal's object id: the tokens' `oid`.
    pub object_id: String,
    /// The client secret it may sign in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<WorldSecret>,
    /// The subjects of the federated tokens it may sign in with (its federated identity
    /// credentials), e.g. `system:serviceaccount:team-a:appattach-workload`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federated_subjects: Vec<String>,
}

/// A secret of the world file, which never prints.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorldSecret(String);

impl WorldSecret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, to compare with what a client sends.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WorldSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A principal found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Object id.
    pub object_id: String,
    /// `User` or `Group`.
    pub kind: crate::arm::models::PrincipalType,
    /// UPN or group name.
    pub name: String,
}

/// Errors in a world file.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The file could not be read.
    #[error("reading the world file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is not a world.
    #[error("the world file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with its location.
        message: String,
    },
    /// The world contradicts itself.
    #[error("the world file is inconsistent: {0}")]
    Inconsistent(String),
}

impl World {
    /// Reads and checks a world file.
    pub fn load(path: &Path) -> Result<Self, WorldError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorldError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let world: World = serde_yaml_ng::from_str(&text).map_err(|e| WorldError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        world.check()?;
        Ok(world)
    }

    /// Checks that every host pool is in a region where host pools can be created, as ARM
    /// would refuse to create it anywhere else.
    pub fn check_locations(&self) -> Result<(), WorldError> {
        let host_pools = crate::arm::ResourceType::HostPool.arm_type();
        for hp in &self.host_pools {
            crate::arm::location::check_available(&hp.location, &host_pools).map_err(|e| {
                WorldError::Inconsistent(format!("host pool {}: {}", hp.name, e.message))
            })?;
        }
        Ok(())
    }

    /// The resource group of a host pool's session hosts' VMs.
    pub fn vm_resource_group<'a>(&'a self, pool: &'a WorldHostPool) -> &'a str {
        pool.vm_resource_group
            .as_deref()
            .unwrap_or(&self.resource_group)
    }

    /// Every session host's virtual machine.
    pub fn vms(&self) -> impl Iterator<Item = WorldVm<'_>> + '_ {
        self.host_pools.iter().flat_map(move |p| {
            p.session_hosts.iter().map(move |host| WorldVm {
                resource_group: self.vm_resource_group(p),
                location: &p.location,
                host,
            })
        })
    }

    /// Checks locations and references: host pools are in regions where they can be
    /// created; members, host pools and groups must exist; object ids are unique; session
    /// hosts' VM names are unique in their resource group, and their images are whole.
    pub fn check(&self) -> Result<(), WorldError> {
        self.check_locations()?;
        let mut vms = BTreeSet::new();
        for vm in self.vms() {
            let key = (
                vm.resource_group.to_ascii_lowercase(),
                vm.host.vm_name().to_ascii_lowercase(),
            );
            if !vms.insert(key) {
                return Err(WorldError::Inconsistent(format!(
                    "session host {} names VM {} in resource group {}, as another session host does; give it a host name whose first label is unique",
                    vm.host.name,
                    vm.host.vm_name(),
                    vm.resource_group
                )));
            }
            if let Some(i) = &vm.host.image
                && i.id.is_none()
                && (i.publisher.is_none() || i.offer.is_none() || i.sku.is_none())
            {
                return Err(WorldError::Inconsistent(format!(
                    "session host {}: image needs an id (a gallery or managed image), or a publisher, an offer and a sku (a marketplace image)",
                    vm.host.name
                )));
            }
        }
        let mut ids = BTreeSet::new();
        for id in self
            .directory
            .users
            .iter()
            .map(|u| &u.object_id)
            .chain(self.directory.groups.iter().map(|g| &g.object_id))
        {
            if !ids.insert(id.to_ascii_lowercase()) {
                return Err(WorldError::Inconsistent(format!(
                    "object id {id} is used twice in directory"
                )));
            }
        }
        for u in &self.directory.users {
            for g in &u.groups {
                if !self
                    .directory
                    .groups
                    .iter()
                    .any(|x| x.name.eq_ignore_ascii_case(g))
                {
                    return Err(WorldError::Inconsistent(format!(
                        "user {} is in group {g}, which directory.groups does not declare",
                        u.upn
                    )));
                }
            }
        }
        self.check_identities()?;
        for ag in &self.application_groups {
            if !self
                .host_pools
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(&ag.host_pool))
            {
                return Err(WorldError::Inconsistent(format!(
                    "application group {} names host pool {}, which hostPools does not declare",
                    ag.name, ag.host_pool
                )));
            }
            for m in &ag.members {
                if self.principal(m).is_none() {
                    return Err(WorldError::Inconsistent(format!(
                        "application group {} has member {m}, which is neither a user's UPN nor a group's name in directory",
                        ag.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks the identities: each whole, and one per client id in a tenant; and that
    /// `principals` comes with `tenantId`.
    fn check_identities(&self) -> Result<(), WorldError> {
        let mut clients = BTreeSet::new();
        for i in &self.identities {
            for (name, value) in [
                ("tenantId", &i.tenant_id),
                ("clientId", &i.client_id),
                ("objectId", &i.object_id),
            ] {
                if value.trim().is_empty() {
                    return Err(WorldError::Inconsistent(format!(
                        "identity {} has an empty {name}",
                        i.client_id
                    )));
                }
            }
            let key = (
                i.tenant_id.to_ascii_lowercase(),
                i.client_id.to_ascii_lowercase(),
            );
            if !clients.insert(key) {
                return Err(WorldError::Inconsistent(format!(
                    "identity {} is listed twice in tenant {}",
                    i.client_id, i.tenant_id
                )));
            }
        }
        if self.principals.is_some() && self.tenant_id.is_none() {
            return Err(WorldError::Inconsistent(
                "principals needs tenantId: without a tenant, ARM requests are not checked for a token".into(),
            ));
        }
        Ok(())
    }

    /// Whether Entra ID knows `tenant`: it is the world's, or an identity's.
    pub fn knows_tenant(&self, tenant: &str) -> bool {
        self.tenant_id
            .iter()
            .chain(self.identities.iter().map(|i| &i.tenant_id))
            .any(|t| t.eq_ignore_ascii_case(tenant))
    }

    /// The identity of client id `client_id` in `tenant`.
    pub fn identity(&self, tenant: &str, client_id: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| {
            i.tenant_id.eq_ignore_ascii_case(tenant) && i.client_id.eq_ignore_ascii_case(client_id)
        })
    }

    /// Whether `object_id` may call ARM on this subscription: `principals` lists it, or
    /// there is no such list.
    pub fn allows(&self, object_id: &str) -> bool {
        self.principals
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x.eq_ignore_ascii_case(object_id)))
    }

    fn lookups(&self) -> &Lookups {
        self.lookup.0.get_or_init(|| {
            let mut users = std::collections::HashMap::new();
            for (i, u) in self.directory.users.iter().enumerate() {
                // The first of equal names wins, as a scan in order found it.
                users.entry(u.upn.to_ascii_lowercase()).or_insert(i);
                users.entry(u.object_id.to_ascii_lowercase()).or_insert(i);
            }
            let mut groups = std::collections::HashMap::new();
            for (i, g) in self.directory.groups.iter().enumerate() {
                groups.entry(g.name.to_ascii_lowercase()).or_insert(i);
                groups.entry(g.object_id.to_ascii_lowercase()).or_insert(i);
            }
            Lookups { users, groups }
        })
    }

    fn find_user(&self, upn_or_id: &str) -> Option<&DirectoryUser> {
        let i = self.lookups().users.get(&upn_or_id.to_ascii_lowercase())?;
        self.directory.users.get(*i)
    }

    /// Finds a user (by UPN or object id) or a group (by name or object id).
    pub fn principal(&self, name_or_id: &str) -> Option<Principal> {
        use crate::arm::models::PrincipalType;
        if let Some(u) = self.find_user(name_or_id) {
            return Some(Principal {
                object_id: u.object_id.clone(),
                kind: PrincipalType::User,
                name: u.upn.clone(),
            });
        }
        let i = self
            .lookups()
            .groups
            .get(&name_or_id.to_ascii_lowercase())?;
        self.directory.groups.get(*i).map(|g| Principal {
            object_id: g.object_id.clone(),
            kind: PrincipalType::Group,
            name: g.name.clone(),
        })
    }

    /// A world of this directory alone (no resources): who is who, for tools that read
    /// the resources elsewhere (`appattach plan` reads them over ARM).
    pub fn of_directory(directory: Directory) -> Self {
        Self {
            directory,
            ..Self::default()
        }
    }

    /// Every user of the directory, with the object ids of its groups, by UPN.
    pub fn users(&self) -> impl Iterator<Item = (String, crate::domain::entitlements::User)> + '_ {
        self.directory
            .users
            .iter()
            .filter_map(|u| self.user(&u.upn).map(|(d, user)| (d.upn, user)))
    }

    /// A user with the object ids of its groups, for the entitlement rule.
    pub fn user(
        &self,
        upn_or_id: &str,
    ) -> Option<(DirectoryUser, crate::domain::entitlements::User)> {
        let u = self.find_user(upn_or_id)?;
        let lookups = self.lookups();
        let user = crate::domain::entitlements::User {
            object_id: u.object_id.to_ascii_lowercase(),
            groups: u
                .groups
                .iter()
                .filter_map(|name| {
                    let g = self
                        .directory
                        .groups
                        .get(*lookups.groups.get(&name.to_ascii_lowercase())?)?;
                    // By name only: a user's groups are named, never given by object id.
                    g.name
                        .eq_ignore_ascii_case(name)
                        .then(|| g.object_id.to_ascii_lowercase())
                })
                .collect(),
        };
        Some((u.clone(), user))
    }
}
