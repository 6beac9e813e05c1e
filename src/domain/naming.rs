//! Names that cross from Kubernetes into the backend: the app attach package's backend
//! name, and the MSIX identity strings (publisher id, family name, full name).

use sha2::{Digest, Sha256};

/// The backend name of the package `name` in `namespace`: `{namespace}-{name}` in the ARM
/// rule for app attach package names (`^[a-z0-9]([a-z0-9]|(-(?!-))){1,61}[a-z0-9]$`).
/// Characters outside `[a-z0-9]` become hyphens, runs of hyphens fold into one, and a name
/// over 63 characters is cut and given a hash suffix so that it stays unique. Two objects can
/// still map to one name (`a-b/c` and `a/b-c`); the controller detects that through the
/// owner tag it writes and refuses the second.
pub fn backend_name(namespace: &str, name: &str) -> String {
    let raw = format!("{namespace}-{name}").to_ascii_lowercase();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let mut out = out.trim_end_matches('-').to_string();
    if out.len() > 63 || out.len() < 3 {
        let hash = format!("{:08x}", fnv1a(&raw) as u32);
        out.truncate(54);
        let out_trimmed = out.trim_end_matches('-').to_string();
        out = if out_trimmed.is_empty() {
            format!("pkg-{hash}")
        } else {
            format!("{out_trimmed}-{hash}")
        };
    }
    out
}

/// The backend name of one version of the package, for a rollout that runs it side by
/// side with the version before: `{namespace}-{name}-v{version}`, dots as hyphens, in the
/// same ARM rule as [`backend_name`].
pub fn versioned_backend_name(namespace: &str, name: &str, version: &str) -> String {
    backend_name(namespace, &format!("{name}-v{version}"))
}

/// The name of the application the controller publishes for the object `owner`
/// (`namespace/name`) and the package's application `app_id` in a RemoteApp application
/// group: `aa-` and 16 hex digits of a SHA-256 of both, in the service's rule for
/// application names (3 to 24 of `[A-Za-z0-9@._ -]`). The same object and application get
/// the same name in every group and for every version.
pub fn application_name(owner: &str, app_id: &str) -> String {
    let digest = Sha256::digest(format!(
        "{}|{}",
        owner.to_ascii_lowercase(),
        app_id.to_ascii_lowercase()
    ));
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("aa-{hex}")
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The publisher id of an MSIX publisher distinguished name: the first 8 bytes of the
/// SHA-256 of its UTF-16LE bytes, as 13 characters of Crockford's base32.
pub fn publisher_id(publisher: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let utf16: Vec<u8> = publisher
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let digest = Sha256::digest(&utf16);
    let mut bits = u128::from(u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")));
    bits <<= 1; // 64 bits padded to 65, five at a time
    (0..13)
        .map(|i| ALPHABET[((bits >> (60 - 5 * i)) & 0x1f) as usize] as char)
        .collect()
}

/// `Name_PublisherId`.
pub fn family_name(name: &str, publisher: &str) -> String {
    format!("{name}_{}", publisher_id(publisher))
}

/// `Name_Version_Architecture_ResourceId_PublisherId` (the resource id is empty).
pub fn full_name(name: &str, version: &str, architecture: &str, publisher: &str) -> String {
    format!(
        "{name}_{version}_{architecture}__{}",
        publisher_id(publisher)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::is_valid_app_attach_package_name;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn application_names_fit_the_service_rule_and_tell_objects_apart(
            ns in "[a-z0-9-]{1,63}", name in "[a-z0-9.-]{1,253}", app in "[A-Za-z][A-Za-z0-9.]{0,63}",
            other in "[A-Za-z][A-Za-z0-9.]{0,63}"
        ) {
            let owner = format!("{ns}/{name}");
            let n = application_name(&owner, &app);
            prop_assert!((3..=24).contains(&n.len()));
            prop_assert!(n.chars().all(|c| c.is_ascii_alphanumeric() || "@._- ".contains(c)));
            prop_assert_eq!(&n, &application_name(&owner.to_uppercase(), &app.to_lowercase()));
            if !other.eq_ignore_ascii_case(&app) {
                prop_assert_ne!(n, application_name(&owner, &other));
            }
        }
    }

    #[test]
    fn publisher_ids_match_windows() {
        // Published pairs: Microsoft's publisher for Store apps, and a common test publisher.
        assert_eq!(
            publisher_id(
                "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US"
            ),
            "8wekyb3d8bbwe"
        );
        assert_eq!(
            full_name(
                "Microsoft.WindowsCalculator",
                "10.1910.0.0",
                "x64",
                "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US"
            ),
            "Microsoft.WindowsCalculator_10.1910.0.0_x64__8wekyb3d8bbwe"
        );
    }

    #[test]
    fn backend_names_read_like_their_objects() {
        assert_eq!(
            backend_name("avd-apps", "contoso-expenses"),
            "avd-apps-contoso-expenses"
        );
        assert_eq!(backend_name("team.a", "App.V2"), "team-a-app-v2");
        let long = backend_name(&"n".repeat(63), &"p".repeat(63));
        assert_eq!(long.len(), 63);
        assert_ne!(long, backend_name(&"n".repeat(63), &"p".repeat(62)));
        assert_eq!(
            versioned_backend_name("avd-apps", "expenses", "2.4.1.0"),
            "avd-apps-expenses-v2-4-1-0"
        );
    }

    proptest! {
        #[test]
        fn backend_names_always_follow_the_arm_rule(ns in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name in "[a-z0-9]([-.a-z0-9]{0,100}[a-z0-9])?") {
            let n = backend_name(&ns, &name);
            prop_assert!(is_valid_app_attach_package_name(&n), "{} from {}/{}", n, ns, name);
            prop_assert_eq!(n.clone(), backend_name(&ns, &name));
        }

        #[test]
        fn publisher_ids_are_13_base32_characters(publisher in "CN=[ -~]{1,80}") {
            let id = publisher_id(&publisher);
            prop_assert_eq!(id.len(), 13);
            prop_assert!(id.chars().all(|c| "0123456789abcdefghjkmnpqrstvwxyz".contains(c)));
        }
    }
}
