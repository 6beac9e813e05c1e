//! The little of `Microsoft.Compute` the controller reads: virtual machines, for what their
//! image and licence type say about the operating system of the session hosts they are.
//! Only the fields it uses are kept; the rest of a VM's body is ignored.

use serde::{Deserialize, Serialize};

use super::models::Resource;

/// The api-version of `Microsoft.Compute/virtualMachines` the controller reads.
pub const COMPUTE_API_VERSION: &str = "2024-07-01";

/// The resource type, as ARM spells it.
pub const VIRTUAL_MACHINE_TYPE: &str = "Microsoft.Compute/virtualMachines";

/// A virtual machine.
pub type VirtualMachine = Resource<VirtualMachineProperties>;

/// `VirtualMachineProperties`, the fields the controller uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    /// The VM's unique id (a GUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// Its disks: the image it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_profile: Option<StorageProfile>,
    /// `Windows_Client` (Windows client multi-session licensing), `Windows_Server` (Azure
    /// Hybrid Benefit for Windows Server), ...; absent when none is declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_type: Option<String>,
    /// `Succeeded`, `Creating`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
}

/// `StorageProfile`, the fields the controller uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    /// The image the OS disk was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    /// The OS disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<OsDisk>,
}

/// `ImageReference`: a marketplace image (publisher, offer, sku, version) or an image of
/// a gallery or a managed image (`id`, or a shared or community gallery image id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ImageReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A managed image or a gallery image version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_gallery_image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_gallery_image_id: Option<String>,
}

/// `OSDisk`, the field the controller uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    /// `Windows` or `Linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
}

/// The resource group of a virtual machine's id, as
/// `/subscriptions/{s}/resourceGroups/{rg}` spelled as given, and the VM's name; `None`
/// when the id is not a `Microsoft.Compute/virtualMachines` id.
pub fn vm_resource_group(id: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    let is = |i: usize, want: &str| parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(want));
    let ok = parts.len() == 8
        && is(0, "subscriptions")
        && is(2, "resourceGroups")
        && is(4, "providers")
        && is(5, "Microsoft.Compute")
        && is(6, "virtualMachines")
        && [1, 3, 7].iter().all(|&i| !parts[i].is_empty());
    ok.then(|| {
        (
            format!("/subscriptions/{}/resourceGroups/{}", parts[1], parts[3]),
            parts[7].to_string(),
        )
    })
}

/// The id of a virtual machine.
pub fn vm_id(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{VIRTUAL_MACHINE_TYPE}/{name}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_id_names_its_resource_group() {
        let id = vm_id("s1", "rg-Hosts", "vm-0");
        assert_eq!(
            vm_resource_group(&id),
            Some((
                "/subscriptions/s1/resourceGroups/rg-Hosts".to_string(),
                "vm-0".to_string()
            ))
        );
        assert_eq!(
            vm_resource_group(&id.to_ascii_lowercase()).map(|(_, n)| n),
            Some("vm-0".to_string())
        );
        for other in [
            "",
            "/subscriptions/s1/resourceGroups/rg",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/m",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v/extensions/e",
        ] {
            assert_eq!(vm_resource_group(other), None, "{other}");
        }
    }

    #[test]
    fn a_vm_body_is_read_for_its_image_and_licence_alone() {
        let vm: VirtualMachine = serde_json::from_value(serde_json::json!({
            "id": vm_id("s", "rg", "vm"), "name": "vm", "type": VIRTUAL_MACHINE_TYPE,
            "location": "westeurope",
            "properties": {
                "vmId": "5c0e7f2c-0000-4000-8000-000000000000",
                "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
                "storageProfile": {
                    "imageReference": {"publisher": "MicrosoftWindowsDesktop", "offer": "windows-11",
                                       "sku": "win11-24h2-avd", "version": "latest", "exactVersion": "26100.1"},
                    "osDisk": {"osType": "Windows", "createOption": "FromImage"}
                },
                "licenseType": "Windows_Client",
                "provisioningState": "Succeeded"
            }
        }))
        .unwrap();
        let image = vm
            .properties
            .storage_profile
            .unwrap()
            .image_reference
            .unwrap();
        assert_eq!(image.offer.as_deref(), Some("windows-11"));
        assert_eq!(
            vm.properties.license_type.as_deref(),
            Some("Windows_Client")
        );
    }
}
