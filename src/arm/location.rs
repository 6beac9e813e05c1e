//! Azure locations as ARM reads them: compared without case or spaces ("West Europe" is
//! `westeurope`), and only those where the resource type is offered.

use super::ArmError;

/// The Azure regions where `Microsoft.DesktopVirtualization` resources (host pools,
/// application groups, app attach packages) can be created: the regions of the
/// geographies that hold Azure Virtual Desktop's service metadata (Australia, Canada,
/// Europe, India, Japan, South Africa, United Kingdom, United States; see "Data locations
/// for Azure Virtual Desktop"), in ARM's normalized spelling.
pub const DESKTOP_VIRTUALIZATION_REGIONS: &[&str] = &[
    "australiaeast",
    "canadacentral",
    "canadaeast",
    "centralindia",
    "centralus",
    "eastus",
    "eastus2",
    "japaneast",
    "japanwest",
    "northcentralus",
    "northeurope",
    "southafricanorth",
    "southcentralus",
    "uksouth",
    "ukwest",
    "westcentralus",
    "westeurope",
    "westus",
    "westus2",
    "westus3",
];

/// A location as ARM normalizes it: lower case, without spaces (`West Europe` →
/// `westeurope`).
pub fn normalize(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether two spellings name the same location, as ARM compares them.
pub fn same(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

/// The normalized location when `Microsoft.DesktopVirtualization` offers `resource_type`
/// (for example `Microsoft.DesktopVirtualization/hostpools`) there; otherwise ARM's
/// refusal, `LocationNotAvailableForResourceType`, with the regions where it is offered.
pub fn check_available(location: &str, resource_type: &str) -> Result<String, ArmError> {
    let normalized = normalize(location);
    if DESKTOP_VIRTUALIZATION_REGIONS.contains(&normalized.as_str()) {
        return Ok(normalized);
    }
    Err(ArmError::new(
        400,
        "LocationNotAvailableForResourceType",
        format!(
            "The provided location '{location}' is not available for resource type '{resource_type}'. List of available regions for the resource type is '{}'.",
            DESKTOP_VIRTUALIZATION_REGIONS.join(",")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize as _;

    #[test]
    fn locations_compare_without_case_or_spaces() {
        assert_eq!(normalize("West Europe"), "westeurope");
        assert_eq!(normalize(" East US 2 "), "eastus2");
        assert!(same("westeurope", "West Europe"));
        assert!(!same("westeurope", "northeurope"));
    }

    #[test]
    fn only_the_regions_the_provider_is_offered_in_are_available() {
        let t = "Microsoft.DesktopVirtualization/hostpools";
        assert_eq!(check_available("West Europe", t).unwrap(), "westeurope");
        let e = check_available("mars", t).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "LocationNotAvailableForResourceType")
        );
        assert!(
            e.message.starts_with(
                "The provided location 'mars' is not available for resource type 'Microsoft.DesktopVirtualization/hostpools'. List of available regions for the resource type is 'australiaeast,"
            ),
            "{}",
            e.message
        );
        // A real Azure region where the provider is not offered is refused too.
        assert!(check_available("southeastasia", t).is_err());
        for region in DESKTOP_VIRTUALIZATION_REGIONS {
            assert_eq!(normalize(region), *region, "kept normalized");
        }
    }

    #[test]
    fn the_examples_are_where_arm_offers_the_provider() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        crate::emulator::World::load(std::path::Path::new(&format!("{dir}/world.yaml")))
            .expect("examples/world.yaml loads");
        let text = std::fs::read_to_string(format!("{dir}/packages.yaml")).unwrap();
        let kind = crate::arm::ResourceType::AppAttachPackage.arm_type();
        let mut packages = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc = serde_yaml_ng::Value::deserialize(doc).unwrap();
            if doc["kind"].as_str() == Some("AppAttachPackage") {
                let location = doc["spec"]["location"].as_str().unwrap();
                check_available(location, &kind).unwrap();
                packages += 1;
            }
        }
        assert!(packages > 0, "examples/packages.yaml has packages");
    }
}
