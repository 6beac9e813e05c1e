//! Who is in which group, where the backend says: what tells a session's user from the
//! users a package is assigned to through a group.

use std::collections::{BTreeSet, HashMap};

/// Users (by lower-case object id) and the groups (lower-case object ids) they are in.
///
/// Compact, as it is kept whole in the picture of the backend: each group's id once, each
/// user as its id and the numbers of its groups, sorted for lookup (50,000 users took
/// 22 MiB as a map of sets of strings; measured with `appattach bench`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    groups: Vec<Box<str>>,
    users: Vec<(Box<str>, Box<[u32]>)>,
}

impl Directory {
    /// A directory of these users, each with the object ids of its groups.
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Self {
        let mut groups: Vec<Box<str>> = Vec::new();
        let mut number: HashMap<String, u32> = HashMap::new();
        // A user listed twice is in the groups of both.
        let mut merged: HashMap<String, Vec<u32>> = HashMap::new();
        for (user, of) in users {
            let into = merged.entry(user.to_ascii_lowercase()).or_default();
            into.extend(of.iter().map(|g| {
                let g = g.to_ascii_lowercase();
                *number.entry(g.clone()).or_insert_with(|| {
                    groups.push(g.into_boxed_str());
                    u32::try_from(groups.len() - 1).unwrap_or(u32::MAX)
                })
            }));
        }
        let mut users: Vec<(Box<str>, Box<[u32]>)> = merged
            .into_iter()
            .map(|(user, mut of)| {
                of.sort_unstable();
                of.dedup();
                (user.into_boxed_str(), of.into_boxed_slice())
            })
            .collect();
        users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        users.shrink_to_fit();
        groups.shrink_to_fit();
        Self { groups, users }
    }

    /// Whether `user` (an object id) is one of `principals` (object ids of users and
    /// groups), directly or through a group it is in.
    pub fn is_any_of(&self, user: &str, principals: &BTreeSet<String>) -> bool {
        let user = user.to_ascii_lowercase();
        principals.contains(&user)
            || self
                .users
                .binary_search_by(|(u, _)| (**u).cmp(user.as_str()))
                .is_ok_and(|i| {
                    self.users[i].1.iter().any(|g| {
                        self.groups
                            .get(*g as usize)
                            .is_some_and(|g| principals.contains(&**g))
                    })
                })
    }

    /// The groups (lower-case object ids) `user` is in; `None` for a user the directory
    /// does not have.
    pub fn groups_of(&self, user: &str) -> Option<BTreeSet<String>> {
        let user = user.to_ascii_lowercase();
        let i = self
            .users
            .binary_search_by(|(u, _)| (**u).cmp(user.as_str()))
            .ok()?;
        Some(
            self.users[i]
                .1
                .iter()
                .filter_map(|g| self.groups.get(*g as usize))
                .map(|g| g.to_string())
                .collect(),
        )
    }

    /// The users (lower-case object ids) in `group`.
    pub fn members_of(&self, group: &str) -> Vec<&str> {
        let group = group.to_ascii_lowercase();
        let Some(n) = self.groups.iter().position(|g| **g == *group) else {
            return vec![];
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.users
            .iter()
            .filter(|(_, of)| of.contains(&n))
            .map(|(u, _)| &**u)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_one_of_the_principals_directly_or_through_a_group() {
        let d = Directory::new([("U1", vec!["G1"]), ("u2", vec![])]);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(d.is_any_of("u1", &set(&["g1"])));
        assert!(d.is_any_of("U2", &set(&["u2"])));
        assert!(!d.is_any_of("u2", &set(&["g1"])));
        assert!(!d.is_any_of("u3", &set(&["g1"])));
    }

    proptest::proptest! {
        /// The compact form answers as the plain map of sets it replaced.
        #[test]
        fn answers_as_a_map_of_sets(
            users in proptest::collection::btree_map("[a-dA-D]", proptest::collection::vec("[g-jG-J]", 0..4), 0..6),
            principals in proptest::collection::btree_set("[a-dg-j]", 0..5),
            asked in "[a-eA-E]",
        ) {
            let d = Directory::new(users.iter().map(|(u, g)| (u.as_str(), g.iter().map(String::as_str).collect())));
            let mut model: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
            for (u, g) in &users {
                model.entry(u.to_ascii_lowercase()).or_default().extend(g.iter().map(|g| g.to_ascii_lowercase()));
            }
            let lower = asked.to_ascii_lowercase();
            let expected = principals.contains(&lower)
                || model.get(&lower).is_some_and(|g| !g.is_disjoint(&principals));
            proptest::prop_assert_eq!(d.is_any_of(&asked, &principals), expected);
            proptest::prop_assert_eq!(d.groups_of(&asked), model.get(&lower).cloned());
            for g in principals.iter().filter(|p| p.starts_with(['g', 'h', 'i', 'j'])) {
                let members: BTreeSet<String> = d.members_of(g).into_iter().map(String::from).collect();
                let expected: BTreeSet<String> = model.iter().filter(|(_, of)| of.contains(g)).map(|(u, _)| u.clone()).collect();
                proptest::prop_assert_eq!(members, expected);
            }
        }
    }
}
