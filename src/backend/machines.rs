//! The session hosts' virtual machines, as the shared picture keeps them: what each VM's
//! image and licence type say, read with one list call per resource group that holds
//! session-host VMs, every page, as part of the picture's refresh.
//!
//! Reading VMs is optional: an identity may manage app attach without being allowed to
//! read `Microsoft.Compute`. A list refused for good (403 `AuthorizationFailed`, a
//! resource group not found, any other answer that retrying would not change) is kept as
//! such, the VMs of that resource group become unknown, and the rest of the picture is
//! good; the next refresh asks again, once. Only a failure that may pass (throttling, 5xx,
//! the network) fails the refresh, as every other list's does.

use std::collections::{BTreeMap, HashMap};

use super::{Backend, BackendError};
use crate::arm::compute::{VirtualMachine, vm_resource_group};
use crate::arm::models::SessionHost;
use crate::domain::host_os::{VmFacts, VmRead};

/// The VMs of the session hosts, by what their resource groups' lists answered.
#[derive(Debug, Clone, Default)]
pub struct Machines {
    /// What each session host's VM says, by lower-case VM id (only VMs session hosts name).
    vms: HashMap<String, VmFacts>,
    /// How each resource group's list went, by lower-case `/subscriptions/{s}/resourceGroups/{rg}`.
    groups: HashMap<String, Listing>,
}

/// How a resource group's list of VMs went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listing {
    /// Read, every page.
    Listed,
    /// Refused for good.
    Refused {
        /// The resource group's name.
        resource_group: String,
        /// The status.
        status: u16,
        /// The ARM error code.
        code: String,
    },
}

impl Machines {
    /// What is known of the VM a session host names.
    pub fn read_of(&self, host: &SessionHost) -> VmRead {
        let Some((group, _)) = host
            .properties
            .resource_id
            .as_deref()
            .and_then(vm_resource_group)
        else {
            return VmRead::NoVm;
        };
        let id = host
            .properties
            .resource_id
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(facts) = self.vms.get(&id) {
            return VmRead::Listed(facts.clone());
        }
        match self.groups.get(&group.to_ascii_lowercase()) {
            Some(Listing::Listed) => VmRead::NotFound {
                resource_group: name_of(&group),
            },
            Some(Listing::Refused {
                resource_group,
                status,
                code,
            }) => VmRead::Unreadable {
                resource_group: resource_group.clone(),
                status: *status,
                code: code.clone(),
            },
            None => VmRead::NotReadYet,
        }
    }
}

/// The resource group's name in `/subscriptions/{s}/resourceGroups/{rg}`.
fn name_of(group_id: &str) -> String {
    group_id.rsplit('/').next().unwrap_or(group_id).to_string()
}

/// What a VM says of its operating system.
pub fn facts_of(vm: &VirtualMachine) -> VmFacts {
    let image = vm
        .properties
        .storage_profile
        .as_ref()
        .and_then(|s| s.image_reference.as_ref());
    VmFacts {
        publisher: image.and_then(|i| i.publisher.clone()),
        offer: image.and_then(|i| i.offer.clone()),
        sku: image.and_then(|i| i.sku.clone()),
        image_id: image.and_then(|i| {
            i.id.clone()
                .or_else(|| i.shared_gallery_image_id.clone())
                .or_else(|| i.community_gallery_image_id.clone())
        }),
        license_type: vm.properties.license_type.clone(),
    }
}

/// Lists the VMs of every resource group the session hosts' VMs are in, once each; returns
/// them and the number of list calls. Fails only on a failure that may pass.
pub async fn read<'a, B: Backend>(
    b: &B,
    hosts: impl Iterator<Item = &'a SessionHost>,
) -> (Result<Machines, BackendError>, u64) {
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    let mut named = std::collections::HashSet::new();
    for id in hosts.filter_map(|h| h.properties.resource_id.as_deref()) {
        if let Some((group, _)) = vm_resource_group(id) {
            wanted.entry(group.to_ascii_lowercase()).or_insert(group);
            named.insert(id.to_ascii_lowercase());
        }
    }
    let mut out = Machines::default();
    let mut calls = 0;
    for (key, group) in wanted {
        calls += 1;
        match b.list_virtual_machines(&group).await {
            Ok(vms) => {
                for vm in vms {
                    let id = vm.id.as_deref().unwrap_or_default().to_ascii_lowercase();
                    if named.contains(&id) {
                        out.vms.insert(id, facts_of(&vm));
                    }
                }
                out.groups.insert(key, Listing::Listed);
            }
            Err(e) if e.is_transient() => return (Err(e), calls),
            Err(BackendError::Arm(e)) => {
                tracing::debug!(
                    resource_group = %group,
                    status = e.status,
                    code = %e.code,
                    "the session hosts' virtual machines cannot be read; their OS kind is unknown"
                );
                out.groups.insert(
                    key,
                    Listing::Refused {
                        resource_group: name_of(&group),
                        status: e.status,
                        code: e.code,
                    },
                );
            }
            Err(e) => return (Err(e), calls),
        }
    }
    (Ok(out), calls)
}
