//! Who gets which package on which host pool at sign-in (the seed's "How a user gets an
//! application").
//!
//! App attach: a user gets a package on a host pool iff the package is active, it is
//! assigned to that host pool, the user can sign in to the host pool (is a member, directly
//! or through a group, of a Desktop or RemoteApp application group of the pool; through a
//! RemoteApp group only when the package's application is published in that group), and
//! the package is assigned to the user or to one of the user's groups.
//!
//! MSIX app attach: the package is added to the host pool and active, and the user can sign
//! in to the host pool; assignment is by application group, so every desktop user sees
//! every package of the pool.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A user of the directory, with the object ids of the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Directory object id.
    pub object_id: String,
    /// Object ids of the user's groups.
    pub groups: BTreeSet<String>,
}

impl User {
    /// The object ids that stand for this user: its own and its groups'.
    fn principals(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.object_id).chain(&self.groups)
    }

    fn is_any_of(&self, principals: &BTreeSet<String>) -> bool {
        self.principals().any(|p| principals.contains(p))
    }
}

/// Kind of application group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppGroupKind {
    /// Full desktop: every package the user is entitled to is attached.
    Desktop,
    /// Published applications only.
    RemoteApp,
}

/// An application group of a host pool, as far as sign-in is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppGroup {
    /// Desktop or RemoteApp.
    pub kind: AppGroupKind,
    /// Object ids of users and groups that may use the application group.
    pub members: BTreeSet<String>,
    /// Package family names (lower case) whose applications are published in the group.
    pub published_families: BTreeSet<String>,
}

/// A host pool and its application groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPool {
    /// ARM id of the host pool (compared case-insensitively).
    pub id: String,
    /// Its application groups.
    pub app_groups: Vec<AppGroup>,
}

/// Which feature delivers a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Feature {
    /// App attach: a package resource of its own, assigned to host pools and principals.
    AppAttach,
    /// MSIX app attach: a package under one host pool.
    MsixAppAttach,
}

/// A package as sign-in sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// ARM id of the package resource.
    pub id: String,
    /// Which feature delivers it.
    pub feature: Feature,
    /// Package family name (compared case-insensitively).
    pub family_name: String,
    /// Package version.
    pub version: String,
    /// UNC path of its image.
    pub image_path: String,
    /// Whether it is active.
    pub active: bool,
    /// Ids of the host pools it is assigned to (app attach), or its one host pool (MSIX app
    /// attach).
    pub host_pools: Vec<String>,
    /// Object ids it is assigned to (app attach only; ignored for MSIX app attach).
    pub principals: BTreeSet<String>,
}

/// A package a user gets at sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entitlement {
    /// ARM id of the package resource.
    pub package_id: String,
    /// Which feature delivers it.
    pub feature: Feature,
    /// Package family name.
    pub family_name: String,
    /// Version the user gets.
    pub version: String,
    /// Image the session mounts.
    pub image_path: String,
}

/// Whether the user may sign in to the host pool: a member, directly or through a group,
/// of one of its application groups.
pub fn can_sign_in(user: &User, pool: &HostPool) -> bool {
    pool.app_groups.iter().any(|g| user.is_any_of(&g.members))
}

/// The packages `user` gets at sign-in to `pool`, in the order given.
pub fn entitled(user: &User, pool: &HostPool, packages: &[Package]) -> Vec<Entitlement> {
    let groups: Vec<&AppGroup> = pool
        .app_groups
        .iter()
        .filter(|g| user.is_any_of(&g.members))
        .collect();
    if groups.is_empty() {
        return Vec::new();
    }
    packages
        .iter()
        .filter(|p| p.active)
        .filter(|p| {
            p.host_pools
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&pool.id))
        })
        .filter(|p| match p.feature {
            Feature::AppAttach => user.is_any_of(&p.principals),
            Feature::MsixAppAttach => true,
        })
        .filter(|p| {
            let family = p.family_name.to_ascii_lowercase();
            groups.iter().any(|g| match g.kind {
                AppGroupKind::Desktop => true,
                AppGroupKind::RemoteApp => g.published_families.contains(&family),
            })
        })
        .map(|p| Entitlement {
            package_id: p.id.clone(),
            feature: p.feature,
            family_name: p.family_name.clone(),
            version: p.version.clone(),
            image_path: p.image_path.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn alice() -> User {
        User {
            object_id: "alice".into(),
            groups: set(&["finance"]),
        }
    }

    fn pool(kind: AppGroupKind, members: &[&str], published: &[&str]) -> HostPool {
        HostPool {
            id: "/hp/pilot".into(),
            app_groups: vec![AppGroup {
                kind,
                members: set(members),
                published_families: set(published),
            }],
        }
    }

    fn app_attach(principals: &[&str]) -> Package {
        Package {
            id: "/pkg/expenses".into(),
            feature: Feature::AppAttach,
            family_name: "Contoso.Expenses_8h66172c634n0".into(),
            version: "2.4.1.0".into(),
            image_path: r"\\fs\apps\expenses.cim".into(),
            active: true,
            host_pools: vec!["/HP/Pilot".into()],
            principals: set(principals),
        }
    }

    #[test]
    fn a_group_member_on_an_assigned_pool_gets_the_package() {
        let got = entitled(
            &alice(),
            &pool(AppGroupKind::Desktop, &["finance"], &[]),
            &[app_attach(&["finance"])],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].version, "2.4.1.0");
    }

    #[test]
    fn a_user_who_cannot_sign_in_gets_nothing() {
        let p = pool(AppGroupKind::Desktop, &["sales"], &[]);
        assert!(!can_sign_in(&alice(), &p));
        assert!(entitled(&alice(), &p, &[app_attach(&["alice"])]).is_empty());
    }

    #[test]
    fn an_unassigned_user_gets_nothing() {
        let p = pool(AppGroupKind::Desktop, &["finance"], &[]);
        assert!(entitled(&alice(), &p, &[app_attach(&["sales"])]).is_empty());
    }

    #[test]
    fn an_inactive_package_reaches_nobody() {
        let mut pkg = app_attach(&["alice"]);
        pkg.active = false;
        assert!(
            entitled(
                &alice(),
                &pool(AppGroupKind::Desktop, &["alice"], &[]),
                &[pkg]
            )
            .is_empty()
        );
    }

    #[test]
    fn a_package_of_another_pool_is_not_attached() {
        let mut pkg = app_attach(&["alice"]);
        pkg.host_pools = vec!["/hp/other".into()];
        assert!(
            entitled(
                &alice(),
                &pool(AppGroupKind::Desktop, &["alice"], &[]),
                &[pkg]
            )
            .is_empty()
        );
    }

    #[test]
    fn remote_app_groups_need_the_application_published() {
        let pkg = app_attach(&["alice"]);
        let unpublished = pool(AppGroupKind::RemoteApp, &["finance"], &[]);
        assert!(can_sign_in(&alice(), &unpublished));
        assert!(entitled(&alice(), &unpublished, std::slice::from_ref(&pkg)).is_empty());
        let published = pool(
            AppGroupKind::RemoteApp,
            &["finance"],
            &["contoso.expenses_8h66172c634n0"],
        );
        assert_eq!(entitled(&alice(), &published, &[pkg]).len(), 1);
    }

    #[test]
    fn msix_app_attach_reaches_every_desktop_user_of_the_pool() {
        let mut pkg = app_attach(&[]);
        pkg.feature = Feature::MsixAppAttach;
        let got = entitled(
            &alice(),
            &pool(AppGroupKind::Desktop, &["finance"], &[]),
            &[pkg],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].feature, Feature::MsixAppAttach);
    }

    fn arb_ids() -> impl Strategy<Value = BTreeSet<String>> {
        proptest::collection::btree_set(
            prop::sample::select(vec!["u1", "u2", "g1", "g2", "g3"]).prop_map(String::from),
            0..4,
        )
    }

    prop_compose! {
        fn arb_package()(principals in arb_ids(), active in any::<bool>(), msix in any::<bool>(),
                         on_pool in any::<bool>(), v in 0u16..5) -> Package {
            Package {
                id: format!("/pkg/{v}"),
                feature: if msix { Feature::MsixAppAttach } else { Feature::AppAttach },
                family_name: format!("Fam{v}"),
                version: format!("1.0.0.{v}"),
                image_path: format!(r"\\fs\s\{v}.cim"),
                active,
                host_pools: if on_pool { vec!["/hp/x".into()] } else { vec!["/hp/y".into()] },
                principals,
            }
        }
    }

    prop_compose! {
        fn arb_pool()(groups in proptest::collection::vec((any::<bool>(), arb_ids(), proptest::collection::btree_set("fam[0-4]", 0..3)), 0..3)) -> HostPool {
            HostPool {
                id: "/HP/X".into(),
                app_groups: groups.into_iter().map(|(desktop, members, published)| AppGroup {
                    kind: if desktop { AppGroupKind::Desktop } else { AppGroupKind::RemoteApp },
                    members,
                    published_families: published,
                }).collect(),
            }
        }
    }

    fn with_unique_ids(packages: Vec<Package>) -> Vec<Package> {
        packages
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                p.id = format!("/pkg/{i}");
                p
            })
            .collect()
    }

    proptest! {
        #[test]
        fn entitlements_obey_every_rule(user_groups in arb_ids(), pool in arb_pool(),
                                        packages in proptest::collection::vec(arb_package(), 0..6)) {
            let user = User { object_id: "u1".into(), groups: user_groups };
            let packages = with_unique_ids(packages);
            let got = entitled(&user, &pool, &packages);
            if !can_sign_in(&user, &pool) {
                prop_assert!(got.is_empty());
            }
            for e in &got {
                let p = packages.iter().find(|p| p.id == e.package_id).unwrap();
                prop_assert!(p.active);
                prop_assert!(p.host_pools.iter().any(|h| h.eq_ignore_ascii_case(&pool.id)));
                if p.feature == Feature::AppAttach {
                    prop_assert!(user.is_any_of(&p.principals));
                }
            }
        }

        #[test]
        fn assigning_more_principals_never_takes_a_package_away(pool in arb_pool(),
                packages in proptest::collection::vec(arb_package(), 0..6), extra in arb_ids()) {
            let user = User { object_id: "u1".into(), groups: ["g1".to_string()].into() };
            let before = entitled(&user, &pool, &packages);
            let widened: Vec<Package> = packages.iter().cloned().map(|mut p| { p.principals.extend(extra.clone()); p }).collect();
            let after = entitled(&user, &pool, &widened);
            for e in before {
                prop_assert!(after.contains(&e));
            }
        }

        #[test]
        fn leaving_every_group_loses_every_app_attach_package(pool in arb_pool(),
                packages in proptest::collection::vec(arb_package(), 0..6)) {
            let user = User { object_id: "nobody".into(), groups: BTreeSet::new() };
            prop_assert!(entitled(&user, &pool, &packages).is_empty());
        }
    }
}
