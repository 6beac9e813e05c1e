//! `Microsoft.Compute/virtualMachines`, read only: the virtual machines the world's session
//! hosts are, listed by resource group (every page) or read one by one, with the image
//! they were made from and their licence type. The session hosts' `properties.resourceId`
//! name them.
//!
//! Requests go through the same door as every other (request counts and log, budget,
//! faults, auth): a fault rule such as `{"pathContains": "Microsoft.Compute/virtualMachines",
//! "status": 403, "code": "AuthorizationFailed", "fraction": 1}` makes an identity that
//! may not read them.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{Value, json};

use super::world::{World, WorldVm};
use crate::arm::ArmError;
use crate::arm::compute::{COMPUTE_API_VERSION, VIRTUAL_MACHINE_TYPE, vm_id};

/// The VM's body, as ARM returns it.
pub fn body(world: &World, vm: &WorldVm<'_>) -> Value {
    let name = vm.host.vm_name();
    let id = vm_id(&world.subscription, vm.resource_group, name);
    let image = vm.host.vm_image();
    let reference = match &image.id {
        Some(id) => json!({ "id": id }),
        None => json!({
            "publisher": image.publisher, "offer": image.offer, "sku": image.sku,
            "version": "latest",
        }),
    };
    let mut properties = json!({
        "vmId": machine_id(&id),
        "hardwareProfile": { "vmSize": "Standard_D4s_v5" },
        "storageProfile": {
            "imageReference": reference,
            "osDisk": { "osType": "Windows", "createOption": "FromImage", "name": format!("{name}-osdisk") },
        },
        "osProfile": { "computerName": name },
        "provisioningState": "Succeeded",
    });
    if let Some(l) = vm.host.vm_license_type() {
        properties["licenseType"] = json!(l);
    }
    json!({
        "id": id,
        "name": name,
        "type": VIRTUAL_MACHINE_TYPE,
        "location": vm.location,
        "properties": properties,
    })
}

/// The VM's `vmId`: a GUID derived from its id.
pub fn machine_id(id: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        id.to_ascii_lowercase().as_bytes(),
    )
    .to_string()
}

/// Serves `segs` (`subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/
/// virtualMachines[/{name}]`, as given) for `method`; `base` and `path` spell a nextLink.
pub fn serve(
    world: &World,
    method: &Method,
    segs: &[&str],
    query: &BTreeMap<String, String>,
    base: &str,
    path: &str,
) -> Result<Value, ArmError> {
    let no_route = || {
        ArmError::new(
            404,
            "NotFound",
            format!("No operation of the emulated API matches {method} {path}."),
        )
    };
    if !segs
        .get(6)
        .is_some_and(|s| s.eq_ignore_ascii_case("virtualMachines"))
        || segs.len() > 8
    {
        return Err(no_route());
    }
    match query.get("api-version") {
        Some(v) if v == COMPUTE_API_VERSION => {}
        Some(v) => {
            return Err(ArmError::new(
                400,
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{v}' is invalid. The supported versions are '{COMPUTE_API_VERSION}'."
                ),
            ));
        }
        None => {
            return Err(ArmError::new(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
    }
    if method != Method::GET {
        return Err(ArmError::new(
            405,
            "MethodNotAllowed",
            format!(
                "{method} is not supported on {path}: the emulator's virtual machines are read only."
            ),
        ));
    }
    let (sub, rg) = (segs[1], segs[3]);
    let known = sub.eq_ignore_ascii_case(&world.subscription)
        && (rg.eq_ignore_ascii_case(&world.resource_group)
            || world
                .host_pools
                .iter()
                .any(|p| world.vm_resource_group(p).eq_ignore_ascii_case(rg)));
    if !known {
        return Err(ArmError::new(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        ));
    }
    let mut vms: Vec<WorldVm<'_>> = world
        .vms()
        .filter(|vm| vm.resource_group.eq_ignore_ascii_case(rg))
        .collect();
    vms.sort_by_key(|vm| vm.host.vm_name().to_ascii_lowercase());
    if let Some(name) = segs.get(7) {
        return vms
            .iter()
            .find(|vm| vm.host.vm_name().eq_ignore_ascii_case(name))
            .map(|vm| body(world, vm))
            .ok_or_else(|| {
                ArmError::not_found(format!(
                    "The Resource '{VIRTUAL_MACHINE_TYPE}/{name}' under resource group '{rg}' was not found."
                ))
            });
    }
    list(world, &vms, query, base, path)
}

/// One page of the VMs, with a nextLink when more follow.
fn list(
    world: &World,
    vms: &[WorldVm<'_>],
    query: &BTreeMap<String, String>,
    base: &str,
    path: &str,
) -> Result<Value, ArmError> {
    let page = super::arm_api::Page::of(query)?;
    let value: Vec<Value> = vms
        .iter()
        .skip(page.skip)
        .take(page.size)
        .map(|vm| body(world, vm))
        .collect();
    Ok(page.body(value, vms.len(), query, &format!("{base}{path}")))
}
