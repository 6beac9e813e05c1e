//! The ARM wire format of `Microsoft.DesktopVirtualization` (api-version 2024-04-03) and of
//! `Microsoft.Authorization` role assignments (2022-04-01): resource ids, bodies and errors.
//!
//! One set of types serves both ends: the emulator parses requests with them and the
//! controller's ARM client will. Field names and enums follow the published schema
//! definitions.

pub mod compute;
pub mod error;
pub mod id;
pub mod location;
pub mod models;

pub use error::ArmError;
pub use id::{ResourceId, ResourceType};

/// The api-version of `Microsoft.DesktopVirtualization` the project targets.
pub const DESKTOP_VIRTUALIZATION_API_VERSION: &str = "2024-04-03";
/// Newer api-versions the emulator also accepts for `Microsoft.DesktopVirtualization`.
pub const DESKTOP_VIRTUALIZATION_API_VERSIONS: &[&str] = &["2024-04-03", "2025-10-10"];
/// The api-version of role assignments.
pub const ROLE_ASSIGNMENTS_API_VERSION: &str = "2022-04-01";
/// The built-in role "Desktop Virtualization User": lets a principal use an application
/// group or, at a package's scope, an app attach package.
pub const DESKTOP_VIRTUALIZATION_USER_ROLE: &str = "1d18fff3-a72a-46b5-b4a9-0b38a3cd7e63";

/// The deterministic name (a GUID) of the role assignment of `role` to `principal` at
/// `scope`: UUIDv5 over the three, so a retried or restarted writer never makes a second one.
pub fn role_assignment_name(scope: &str, principal_id: &str, role: &str) -> String {
    let key = format!(
        "{}|{}|{}",
        scope.to_ascii_lowercase(),
        principal_id.to_ascii_lowercase(),
        role.to_ascii_lowercase()
    );
    uuid::Uuid::new_v5(&ROLE_ASSIGNMENT_NAMESPACE, key.as_bytes()).to_string()
}

/// The UUIDv5 namespace of our role assignment names.
const ROLE_ASSIGNMENT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d1f_7a52_3c1e_4b4e_9a4e_0a77_a7ac_0001);

/// Where the controller's resources live, and how their ARM ids are spelled: host pools
/// by name in the resource group (or by full id anywhere), app attach packages by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Subscription id.
    pub subscription: String,
    /// Resource group name.
    pub resource_group: String,
}

impl Scope {
    /// The ARM id of a host pool given by name (in the resource group) or by full id.
    pub fn host_pool_id(&self, name_or_id: &str) -> String {
        self.id_of(ResourceType::HostPool, name_or_id)
    }

    /// The ARM id of an application group given by name (in the resource group) or by full
    /// id.
    pub fn application_group_id(&self, name_or_id: &str) -> String {
        self.id_of(ResourceType::ApplicationGroup, name_or_id)
    }

    /// The id of a top-level resource of the resource group given by name, or its full id.
    fn id_of(&self, kind: ResourceType, name_or_id: &str) -> String {
        if name_or_id.starts_with('/') {
            name_or_id.to_string()
        } else {
            ResourceId::new(
                &self.subscription,
                &self.resource_group,
                kind,
                &[name_or_id],
            )
            .to_string()
        }
    }

    /// The ARM id of an app attach package of the resource group.
    pub fn package_id(&self, name: &str) -> String {
        ResourceId::new(
            &self.subscription,
            &self.resource_group,
            ResourceType::AppAttachPackage,
            &[name],
        )
        .to_string()
    }

    /// The full id of a role assignment at `scope`.
    pub fn role_assignment_id(scope: &str, name: &str) -> String {
        format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
    }
}

/// Whether `s` is a GUID in its usual 8-4-4-4-12 form.
pub fn is_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// Whether `name` is a valid app attach package name:
/// `^[a-z0-9]([a-z0-9]|(-(?!-))){1,61}[a-z0-9]$`.
pub fn is_valid_app_attach_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    (3..=63).contains(&b.len())
        && b.iter().all(ok_char)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn package_names_follow_the_arm_rule() {
        for good in ["abc", "contoso-expenses", "a1-b2-c3", &"a".repeat(63)] {
            assert!(is_valid_app_attach_package_name(good), "{good}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "a--b",
            "Abc",
            "a_b",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_app_attach_package_name(bad), "{bad}");
        }
    }

    #[test]
    fn role_assignment_names_are_stable_guids() {
        let a = role_assignment_name("/s/x", "P", DESKTOP_VIRTUALIZATION_USER_ROLE);
        assert!(is_guid(&a));
        assert_eq!(
            a,
            role_assignment_name("/S/X", "p", DESKTOP_VIRTUALIZATION_USER_ROLE)
        );
        assert_ne!(
            a,
            role_assignment_name("/s/y", "p", DESKTOP_VIRTUALIZATION_USER_ROLE)
        );
    }

    proptest! {
        #[test]
        fn valid_names_match_the_published_pattern(name in "[a-z0-9-]{1,70}") {
            // The published pattern, spelled without look-ahead.
            let expected = name.len() >= 3 && name.len() <= 63
                && !name.starts_with('-') && !name.ends_with('-') && !name.contains("--");
            prop_assert_eq!(is_valid_app_attach_package_name(&name), expected);
        }
    }
}
