//! Which kind of Windows a session host runs: a client (Windows 11 or 10 Enterprise,
//! single- or multi-session) or a server. App attach applications run on Windows client
//! session hosts only, and a session host's `osVersion` alone cannot always tell:
//! Windows Server 2025 and Windows 11 24H2 are both build 26100. Its virtual machine can:
//! the image it was made from, and the licence type it declares.
//!
//! The rules, in order; the first that tells decides:
//! 1. The image: publisher `MicrosoftWindowsDesktop`, or an offer of Windows 10/11 or
//!    Office 365 (`windows-10`, `windows-11`, `office-365`, ...), is a client; publisher
//!    `MicrosoftWindowsServer`, or an offer of Windows Server (`WindowsServer`,
//!    `...windows-server...`), is a server. A gallery or managed image says nothing.
//! 2. The build in `osVersion`, where only one kind ever had it: 20348 (Windows Server
//!    2022) and 25398 (Windows Server 23H2) are servers; 22000 to 22631 (Windows 11 21H2
//!    to 23H2) and 19043 to 19045 (Windows 10 21H1 to 22H2) are clients. Builds both kinds
//!    share (26100, 17763, 14393, ...) say nothing.
//! 3. The VM's licence type: `Windows_Client` (Windows client multi-session licensing) is
//!    a client, `Windows_Server` (Azure Hybrid Benefit for Windows Server) a server.
//!
//! Otherwise the kind is unknown, with why, so that the controller can say what would
//! tell it. Pure.

/// The kind of Windows a session host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OsKind {
    /// Windows 11 or Windows 10 (Enterprise, single- or multi-session).
    WindowsClient,
    /// Windows Server.
    WindowsServer,
    /// Nothing known tells.
    Unknown,
}

/// What a session host's virtual machine says of its operating system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmFacts {
    /// Marketplace image publisher, e.g. `MicrosoftWindowsDesktop`.
    pub publisher: Option<String>,
    /// Marketplace image offer, e.g. `windows-11`.
    pub offer: Option<String>,
    /// Marketplace image SKU, e.g. `win11-24h2-avd`.
    pub sku: Option<String>,
    /// A gallery or managed image's id, when the VM was made from one.
    pub image_id: Option<String>,
    /// `Windows_Client`, `Windows_Server`, ...; `None` when the VM declares none.
    pub license_type: Option<String>,
}

/// What the controller could learn of a session host's virtual machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmRead {
    /// The VM, as listed.
    Listed(VmFacts),
    /// The list of the VMs of its resource group was refused or failed for good (403
    /// `AuthorizationFailed` where the identity may not read VMs).
    Unreadable {
        /// The resource group's name.
        resource_group: String,
        /// The HTTP status of the refusal.
        status: u16,
        /// Its ARM error code.
        code: String,
    },
    /// Its resource group was listed and the VM is not in it.
    NotFound {
        /// The resource group's name.
        resource_group: String,
    },
    /// The session host names no `Microsoft.Compute` virtual machine in its
    /// `properties.resourceId` (none, or another kind of machine).
    NoVm,
    /// Its resource group has not been listed yet: the next refresh of the picture lists it.
    NotReadYet,
}

/// Why a session host's kind is unknown.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unknown {
    /// Its VM could not be read: the list of its resource group was refused.
    Unreadable {
        /// The resource group's name.
        resource_group: String,
        /// The HTTP status of the refusal.
        status: u16,
        /// Its ARM error code.
        code: String,
    },
    /// Its VM is not in its resource group.
    NotFound {
        /// The resource group's name.
        resource_group: String,
    },
    /// It names no virtual machine.
    NoVm,
    /// Its VM's image does not tell, and the VM declares no licence type.
    ImageSilent,
    /// Its VM has not been read yet.
    NotReadYet,
}

impl Unknown {
    /// Whether a person can do something about it (not a VM about to be read).
    pub fn is_lasting(&self) -> bool {
        !matches!(self, Self::NotReadYet)
    }

    /// Why, and what to do, for `n` session hosts: the words after "n session host(s) ...".
    pub fn explain(&self) -> String {
        match self {
            Self::Unreadable {
                resource_group,
                status: 403,
                ..
            } => format!(
                "the controller's identity cannot read Microsoft.Compute/virtualMachines in resource group {resource_group} (grant it Reader, or Microsoft.Compute/virtualMachines/read, on {resource_group})"
            ),
            Self::Unreadable {
                resource_group,
                status: 404,
                ..
            } => format!(
                "their resource group {resource_group} was not found (the session hosts name VMs of a resource group that does not exist)"
            ),
            Self::Unreadable {
                resource_group,
                status,
                code,
            } => format!(
                "listing the virtual machines of resource group {resource_group} was refused ({status} {code}); give the controller's identity read access to them"
            ),
            Self::NotFound { resource_group } => format!(
                "their virtual machines are not in resource group {resource_group} (a session host whose VM was deleted: remove it from the host pool)"
            ),
            Self::NoVm => {
                "they name no Azure virtual machine (properties.resourceId is empty or not a Microsoft.Compute/virtualMachines id)".to_string()
            }
            Self::ImageSilent => {
                "their VMs' image (a gallery, managed or third-party image) does not say which Windows it is and the VMs declare no licenseType (Windows 11/10 Enterprise multi-session VMs should have licenseType Windows_Client)".to_string()
            }
            Self::NotReadYet => {
                "their virtual machines have not been read yet (the next refresh of the controller's picture reads them)".to_string()
            }
        }
    }
}

/// A session host's operating system, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOs {
    /// Its `osVersion`, e.g. `10.0.26100.2894`.
    pub os_version: Option<String>,
    /// Client, server or unknown.
    pub kind: OsKind,
    /// Why the kind is unknown, when it is.
    pub unknown: Option<Unknown>,
}

/// The kind a VM's image tells, if it tells.
pub fn by_image(vm: &VmFacts) -> OsKind {
    let lower = |s: &Option<String>| s.as_deref().unwrap_or_default().to_ascii_lowercase();
    match lower(&vm.publisher).as_str() {
        "microsoftwindowsdesktop" => return OsKind::WindowsClient,
        "microsoftwindowsserver" => return OsKind::WindowsServer,
        _ => {}
    }
    let offer = lower(&vm.offer);
    if offer.contains("windowsserver") || offer.contains("windows-server") {
        OsKind::WindowsServer
    } else if [
        "windows-10",
        "windows-11",
        "windows10",
        "windows11",
        "office-365",
    ]
    .iter()
    .any(|p| offer.starts_with(p))
    {
        OsKind::WindowsClient
    } else {
        OsKind::Unknown
    }
}

/// The kind an `osVersion` tells, where only one kind ever had its build.
pub fn by_build(os_version: &str) -> OsKind {
    let build = os_version
        .split('.')
        .nth(2)
        .and_then(|b| b.trim().parse::<u32>().ok());
    match build {
        Some(20348 | 25398) => OsKind::WindowsServer,
        Some(22000..=22631 | 19043..=19045) => OsKind::WindowsClient,
        _ => OsKind::Unknown,
    }
}

/// The kind a VM's licence type tells, if it tells.
pub fn by_license(license_type: Option<&str>) -> OsKind {
    match license_type {
        Some(l) if l.eq_ignore_ascii_case("Windows_Client") => OsKind::WindowsClient,
        Some(l) if l.eq_ignore_ascii_case("Windows_Server") => OsKind::WindowsServer,
        _ => OsKind::Unknown,
    }
}

/// A session host's OS from what is known of its VM and its `osVersion`.
pub fn classify(vm: &VmRead, os_version: Option<&str>) -> HostOs {
    let listed = match vm {
        VmRead::Listed(f) => Some(f),
        _ => None,
    };
    let kind = [
        listed.map_or(OsKind::Unknown, by_image),
        os_version.map_or(OsKind::Unknown, by_build),
        by_license(listed.and_then(|f| f.license_type.as_deref())),
    ]
    .into_iter()
    .find(|k| *k != OsKind::Unknown)
    .unwrap_or(OsKind::Unknown);
    let unknown = (kind == OsKind::Unknown).then(|| match vm {
        VmRead::Listed(_) => Unknown::ImageSilent,
        VmRead::Unreadable {
            resource_group,
            status,
            code,
        } => Unknown::Unreadable {
            resource_group: resource_group.clone(),
            status: *status,
            code: code.clone(),
        },
        VmRead::NotFound { resource_group } => Unknown::NotFound {
            resource_group: resource_group.clone(),
        },
        VmRead::NoVm => Unknown::NoVm,
        VmRead::NotReadYet => Unknown::NotReadYet,
    });
    HostOs {
        os_version: os_version.map(str::to_string),
        kind,
        unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WIN11_23H2: &str = "10.0.22631.4602";
    const BUILD_26100: &str = "10.0.26100.2894";
    const SERVER_2022: &str = "10.0.20348.2966";

    fn marketplace(publisher: &str, offer: &str, sku: &str) -> VmFacts {
        VmFacts {
            publisher: Some(publisher.into()),
            offer: Some(offer.into()),
            sku: Some(sku.into()),
            ..VmFacts::default()
        }
    }

    fn gallery(license: Option<&str>) -> VmFacts {
        VmFacts {
            image_id: Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/avd/versions/1.0.0".into()),
            license_type: license.map(str::to_string),
            ..VmFacts::default()
        }
    }

    fn kind(vm: VmFacts, os: &str) -> OsKind {
        classify(&VmRead::Listed(vm), Some(os)).kind
    }

    #[test]
    fn marketplace_images_tell_client_from_server_on_the_shared_build() {
        for (publisher, offer, sku, want) in [
            (
                "MicrosoftWindowsDesktop",
                "windows-11",
                "win11-24h2-avd",
                OsKind::WindowsClient,
            ),
            (
                "MicrosoftWindowsDesktop",
                "office-365",
                "win11-24h2-avd-m365",
                OsKind::WindowsClient,
            ),
            (
                "microsoftwindowsdesktop",
                "Windows-10",
                "win10-22h2-avd",
                OsKind::WindowsClient,
            ),
            (
                "MicrosoftWindowsServer",
                "WindowsServer",
                "2025-datacenter-azure-edition",
                OsKind::WindowsServer,
            ),
            (
                "center-for-internet-security-inc",
                "cis-windows-server-2025-l1",
                "cis-ws2025-l1",
                OsKind::WindowsServer,
            ),
        ] {
            assert_eq!(
                kind(marketplace(publisher, offer, sku), BUILD_26100),
                want,
                "{publisher}/{offer}/{sku}"
            );
        }
    }

    #[test]
    fn a_gallery_image_is_told_by_its_licence_type_or_not_at_all() {
        assert_eq!(
            kind(gallery(Some("Windows_Client")), BUILD_26100),
            OsKind::WindowsClient
        );
        assert_eq!(
            kind(gallery(Some("Windows_Server")), BUILD_26100),
            OsKind::WindowsServer
        );
        let silent = classify(&VmRead::Listed(gallery(None)), Some(BUILD_26100));
        assert_eq!(silent.kind, OsKind::Unknown);
        assert_eq!(silent.unknown, Some(Unknown::ImageSilent));
        // The build tells where only one kind ever had it.
        assert_eq!(kind(gallery(None), SERVER_2022), OsKind::WindowsServer);
        assert_eq!(kind(gallery(None), WIN11_23H2), OsKind::WindowsClient);
    }

    #[test]
    fn without_its_vm_a_host_is_told_by_its_build_alone_and_says_why_not() {
        let denied = VmRead::Unreadable {
            resource_group: "rg-hosts".into(),
            status: 403,
            code: "AuthorizationFailed".into(),
        };
        let h = classify(&denied, Some(BUILD_26100));
        assert_eq!(h.kind, OsKind::Unknown);
        let why = h.unknown.unwrap();
        assert!(why.is_lasting());
        assert!(
            why.explain()
                .contains("Microsoft.Compute/virtualMachines/read")
                && why.explain().contains("rg-hosts"),
            "{}",
            why.explain()
        );
        let h = classify(&denied, Some(SERVER_2022));
        assert_eq!((h.kind, h.unknown), (OsKind::WindowsServer, None));
        assert_eq!(classify(&VmRead::NoVm, None).unknown, Some(Unknown::NoVm));
        assert!(
            !classify(&VmRead::NotReadYet, Some(BUILD_26100))
                .unknown
                .unwrap()
                .is_lasting()
        );
    }

    #[test]
    fn builds_tell_only_where_one_kind_had_them() {
        assert_eq!(by_build(SERVER_2022), OsKind::WindowsServer);
        assert_eq!(by_build("10.0.25398.1"), OsKind::WindowsServer);
        assert_eq!(by_build(WIN11_23H2), OsKind::WindowsClient);
        assert_eq!(by_build("10.0.19045.5247"), OsKind::WindowsClient);
        for shared in [BUILD_26100, "10.0.17763.1", "10.0.14393.1", "", "garbage"] {
            assert_eq!(by_build(shared), OsKind::Unknown, "{shared}");
        }
    }

    fn any_text() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            Just("MicrosoftWindowsDesktop".to_string()),
            Just("MicrosoftWindowsServer".to_string()),
            Just("windows-11".to_string()),
            Just("WindowsServer".to_string()),
            Just("Windows_Client".to_string()),
            Just("Windows_Server".to_string()),
            "[ -~]{0,24}",
        ])
    }

    fn any_vm() -> impl Strategy<Value = VmFacts> {
        (any_text(), any_text(), any_text(), any_text(), any_text()).prop_map(
            |(publisher, offer, sku, image_id, license_type)| VmFacts {
                publisher,
                offer,
                sku,
                image_id,
                license_type,
            },
        )
    }

    fn any_os_version() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            Just(BUILD_26100.to_string()),
            Just(SERVER_2022.to_string()),
            Just(WIN11_23H2.to_string()),
            (0u32..40_000).prop_map(|b| format!("10.0.{b}.1")),
            "[ -~]{0,16}",
        ])
    }

    proptest! {
        /// The image decides whatever the build and the licence say; the build decides
        /// over the licence; and a host is unknown exactly when it says why.
        #[test]
        fn the_image_then_the_build_then_the_licence_decide(vm in any_vm(), os in any_os_version()) {
            let h = classify(&VmRead::Listed(vm.clone()), os.as_deref());
            let image = by_image(&vm);
            let build = os.as_deref().map_or(OsKind::Unknown, by_build);
            if image != OsKind::Unknown {
                prop_assert_eq!(h.kind, image);
            } else if build != OsKind::Unknown {
                prop_assert_eq!(h.kind, build);
            } else {
                prop_assert_eq!(h.kind, by_license(vm.license_type.as_deref()));
            }
            prop_assert_eq!(h.kind == OsKind::Unknown, h.unknown.is_some());
            prop_assert_eq!(h.os_version, os);
        }

        /// A Windows Server image is never taken for a client, whatever else it says.
        #[test]
        fn a_server_image_is_a_server(mut vm in any_vm(), os in any_os_version(), case in any::<bool>()) {
            vm.publisher = Some(if case { "MICROSOFTWINDOWSSERVER" } else { "MicrosoftWindowsServer" }.into());
            prop_assert_eq!(classify(&VmRead::Listed(vm), os.as_deref()).kind, OsKind::WindowsServer);
        }

        /// Without a listed VM, only the build can tell; the licence of no VM is read.
        #[test]
        fn without_a_vm_only_the_build_tells(os in any_os_version()) {
            for vm in [VmRead::NoVm, VmRead::NotReadYet, VmRead::NotFound { resource_group: "rg".into() }] {
                let h = classify(&vm, os.as_deref());
                prop_assert_eq!(h.kind, os.as_deref().map_or(OsKind::Unknown, by_build));
            }
        }
    }
}
