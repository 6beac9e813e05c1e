//! Who is in which group, where the backend says: what tells a session's user from the
//! users a package is assigned to through a group.

use std::collections::{BTreeMap, BTreeSet};

/// Users (by lower-case object id) and the groups (lower-case object ids) they are in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    groups_of: BTreeMap<String, BTreeSet<String>>,
}

impl Directory {
    /// A directory of these users, each with the object ids of its groups.
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Self {
        let groups_of = users
            .into_iter()
            .map(|(user, groups)| {
                (
                    user.to_ascii_lowercase(),
                    groups.iter().map(|g| g.to_ascii_lowercase()).collect(),
                )
            })
            .collect();
        Self { groups_of }
    }

    /// Whether `user` (an object id) is one of `principals` (object ids of users and
    /// groups), directly or through a group it is in.
    pub fn is_any_of(&self, user: &str, principals: &BTreeSet<String>) -> bool {
        let user = user.to_ascii_lowercase();
        principals.contains(&user)
            || self
                .groups_of
                .get(&user)
                .is_some_and(|groups| !groups.is_disjoint(principals))
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
}
