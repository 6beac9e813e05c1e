//! ARM resource ids of the kinds we use. Fixed segments match case-insensitively, as in
//! ARM; names keep the case they were created with, and compare case-insensitively.

use std::fmt;

/// The provider namespace.
pub const PROVIDER: &str = "Microsoft.DesktopVirtualization";

/// A kind of `Microsoft.DesktopVirtualization` resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `hostPools/{hp}`
    HostPool,
    /// `hostPools/{hp}/sessionHosts/{sh}`
    SessionHost,
    /// `hostPools/{hp}/sessionHosts/{sh}/userSessions/{id}`
    UserSession,
    /// `hostPools/{hp}/msixPackages/{fullName}` (MSIX app attach)
    MsixPackage,
    /// `applicationGroups/{ag}`
    ApplicationGroup,
    /// `applicationGroups/{ag}/applications/{app}`
    Application,
    /// `appAttachPackages/{name}`
    AppAttachPackage,
}

impl ResourceType {
    /// Every kind.
    pub const ALL: [ResourceType; 7] = [
        Self::HostPool,
        Self::SessionHost,
        Self::UserSession,
        Self::MsixPackage,
        Self::ApplicationGroup,
        Self::Application,
        Self::AppAttachPackage,
    ];

    /// The collection segments of the path, outermost first.
    pub fn segments(self) -> &'static [&'static str] {
        match self {
            Self::HostPool => &["hostPools"],
            Self::SessionHost => &["hostPools", "sessionHosts"],
            Self::UserSession => &["hostPools", "sessionHosts", "userSessions"],
            Self::MsixPackage => &["hostPools", "msixPackages"],
            Self::ApplicationGroup => &["applicationGroups"],
            Self::Application => &["applicationGroups", "applications"],
            Self::AppAttachPackage => &["appAttachPackages"],
        }
    }

    /// The `type` string ARM returns, lower case as the service writes it.
    pub fn arm_type(self) -> String {
        let mut t = PROVIDER.to_string();
        for s in self.segments() {
            t.push('/');
            t.push_str(&s.to_ascii_lowercase());
        }
        t
    }

    /// The kind whose collection segments are these (case-insensitive).
    pub fn from_segments(segments: &[&str]) -> Option<Self> {
        Self::ALL.into_iter().find(|k| {
            let own = k.segments();
            own.len() == segments.len()
                && own
                    .iter()
                    .zip(segments)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        })
    }

    /// The parent kind, for child resources.
    pub fn parent(self) -> Option<Self> {
        let own = self.segments();
        Self::from_segments(&own[..own.len() - 1])
    }
}

/// The id of one `Microsoft.DesktopVirtualization` resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    /// Subscription id.
    pub subscription: String,
    /// Resource group name.
    pub resource_group: String,
    /// Kind of resource.
    pub kind: ResourceType,
    /// One name per collection segment, outermost first.
    pub names: Vec<String>,
}

impl ResourceId {
    /// An id of a top-level resource.
    pub fn new(
        subscription: &str,
        resource_group: &str,
        kind: ResourceType,
        names: &[&str],
    ) -> Self {
        debug_assert_eq!(kind.segments().len(), names.len());
        Self {
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            kind,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    /// Parses a full id such as
    /// `/subscriptions/S/resourceGroups/RG/providers/Microsoft.DesktopVirtualization/hostPools/HP`.
    pub fn parse(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
        if parts.len() < 8 || !parts.len().is_multiple_of(2) {
            return None;
        }
        let fixed = |i: usize, want: &str| parts[i].eq_ignore_ascii_case(want);
        if !(fixed(0, "subscriptions")
            && fixed(2, "resourceGroups")
            && fixed(4, "providers")
            && fixed(5, PROVIDER))
        {
            return None;
        }
        let rest = &parts[6..];
        let segments: Vec<&str> = rest.iter().step_by(2).copied().collect();
        let names: Vec<String> = rest
            .iter()
            .skip(1)
            .step_by(2)
            .map(|s| s.to_string())
            .collect();
        if parts[1].is_empty() || parts[3].is_empty() || names.iter().any(String::is_empty) {
            return None;
        }
        Some(Self {
            subscription: parts[1].to_string(),
            resource_group: parts[3].to_string(),
            kind: ResourceType::from_segments(&segments)?,
            names,
        })
    }

    /// The resource's own name (the last one).
    pub fn leaf(&self) -> &str {
        self.names.last().map(String::as_str).unwrap_or_default()
    }

    /// The `name` ARM returns: child resources are `parent/child`.
    pub fn arm_name(&self) -> String {
        self.names.join("/")
    }

    /// The parent resource, for child resources.
    pub fn parent(&self) -> Option<Self> {
        let kind = self.kind.parent()?;
        Some(Self {
            subscription: self.subscription.clone(),
            resource_group: self.resource_group.clone(),
            kind,
            names: self.names[..self.names.len() - 1].to_vec(),
        })
    }

    /// A child of this resource.
    pub fn child(&self, kind: ResourceType, name: &str) -> Self {
        debug_assert_eq!(kind.parent(), Some(self.kind));
        let mut names = self.names.clone();
        names.push(name.to_string());
        Self {
            subscription: self.subscription.clone(),
            resource_group: self.resource_group.clone(),
            kind,
            names,
        }
    }

    /// The id in lower case: the key ARM compares ids by.
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }

    /// The resource group's id, a prefix of every id in it.
    pub fn resource_group_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription, self.resource_group
        )
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/providers/{PROVIDER}", self.resource_group_id())?;
        for (segment, name) in self.kind.segments().iter().zip(&self.names) {
            write!(f, "/{segment}/{name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_match_case_insensitively() {
        let text = "/subscriptions/s1/resourceGroups/rg-avd/providers/Microsoft.DesktopVirtualization/hostPools/hp1/sessionHosts/sh1.contoso.com";
        let id = ResourceId::parse(text).unwrap();
        assert_eq!(id.kind, ResourceType::SessionHost);
        assert_eq!(id.to_string(), text);
        assert_eq!(id.arm_name(), "hp1/sh1.contoso.com");
        let lower = ResourceId::parse(&text.to_ascii_lowercase()).unwrap();
        assert_eq!(lower.key(), id.key());
        assert_eq!(id.parent().unwrap().kind, ResourceType::HostPool);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "/subscriptions/s1",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.DesktopVirtualization/hostPools",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.DesktopVirtualization/hostPools/",
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.DesktopVirtualization/widgets/w",
        ] {
            assert!(ResourceId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn types_are_lower_case_as_arm_returns_them() {
        assert_eq!(
            ResourceType::AppAttachPackage.arm_type(),
            "Microsoft.DesktopVirtualization/appattachpackages"
        );
        assert_eq!(
            ResourceType::UserSession.arm_type(),
            "Microsoft.DesktopVirtualization/hostpools/sessionhosts/usersessions"
        );
    }
}
