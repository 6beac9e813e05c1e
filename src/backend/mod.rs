//! The management backend as the controller sees it: one ARM client, behind a trait, that
//! talks to Azure Resource Manager or to the embedded emulator alike.

mod client;
pub mod machines;
pub mod snapshot;
pub mod throttle;

pub use client::{ArmClient, Auth, drain_body};

use std::future::Future;
use std::time::Duration;

use crate::arm::models::{
    AppAttachPackage, Application, ApplicationGroup, HostPool, MsixPackage, RoleAssignment,
    SendMessage, SessionHost, UserSession,
};
use crate::arm::{ArmError, Scope};
use crate::domain::directory::Directory;

/// Why a backend call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// ARM answered with an error.
    #[error("{0}")]
    Arm(ArmError),
    /// ARM is throttling; try again after the delay.
    #[error("throttled by the backend; retry after {}s", .0.as_secs())]
    Throttled(Duration),
    /// The request did not reach the backend or its answer did not come back.
    #[error("the backend could not be reached: {0}")]
    Transport(String),
    /// The answer could not be read.
    #[error("the backend's answer could not be read: {0}")]
    Decode(String),
    /// No token for the backend could be had.
    #[error("{0}")]
    Auth(String),
    /// The client's own request budget for this kind of request is spent for now.
    #[error("the controller's ARM request budget is spent; retry after {}ms", .0.as_millis())]
    Budget(Duration),
}

impl BackendError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Arm(e) => {
                e.status >= 500 || e.status == 408 || e.status == 409 && e.code == "Conflict"
            }
            Self::Throttled(_)
            | Self::Budget(_)
            | Self::Transport(_)
            | Self::Decode(_)
            | Self::Auth(_) => true,
        }
    }

    /// The delay the backend asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled(d) | Self::Budget(d) => Some(*d),
            _ => None,
        }
    }
}

/// Result of a backend call.
pub type Result<T> = std::result::Result<T, BackendError>;

/// The operations the controller uses. Names are resource names in the configured
/// resource group; host pools may also be given as full ARM ids.
pub trait Backend: Send + Sync + Clone + 'static {
    /// Where the resources live: the subscription and resource group, which spell ids.
    fn scope(&self) -> &Scope;
    /// The ARM id of a host pool given by name or id.
    fn host_pool_id(&self, name_or_id: &str) -> String {
        self.scope().host_pool_id(name_or_id)
    }
    /// The ARM id of an app attach package.
    fn package_id(&self, name: &str) -> String {
        self.scope().package_id(name)
    }
    /// The directory's users and their groups, where the backend has it (the emulator);
    /// `None` where it does not (Azure keeps it in Microsoft Graph, which the controller
    /// does not read).
    fn directory(&self) -> impl Future<Output = Result<Option<Directory>>> + Send;
    /// GET an app attach package.
    fn get_package(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<AppAttachPackage>>> + Send;
    /// PUT an app attach package.
    fn put_package(
        &self,
        name: &str,
        package: &AppAttachPackage,
    ) -> impl Future<Output = Result<AppAttachPackage>> + Send;
    /// DELETE an app attach package.
    fn delete_package(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// GET a host pool.
    fn get_host_pool(&self, id: &str) -> impl Future<Output = Result<Option<HostPool>>> + Send;
    /// List a host pool's session hosts.
    fn list_session_hosts(
        &self,
        pool_id: &str,
    ) -> impl Future<Output = Result<Vec<SessionHost>>> + Send;
    /// The user sessions of a host pool.
    fn list_user_sessions(
        &self,
        pool_id: &str,
    ) -> impl Future<Output = Result<Vec<UserSession>>> + Send;
    /// GET an MSIX package under a host pool.
    fn get_msix_package(
        &self,
        pool_id: &str,
        full_name: &str,
    ) -> impl Future<Output = Result<Option<MsixPackage>>> + Send;
    /// PUT an MSIX package under a host pool.
    fn put_msix_package(
        &self,
        pool_id: &str,
        full_name: &str,
        package: &MsixPackage,
    ) -> impl Future<Output = Result<MsixPackage>> + Send;
    /// DELETE an MSIX package under a host pool.
    fn delete_msix_package(
        &self,
        pool_id: &str,
        full_name: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// List the MSIX packages of a host pool.
    fn list_msix_packages(
        &self,
        pool_id: &str,
    ) -> impl Future<Output = Result<Vec<MsixPackage>>> + Send;
    /// Role assignments at exactly `scope`.
    fn list_role_assignments(
        &self,
        scope: &str,
    ) -> impl Future<Output = Result<Vec<RoleAssignment>>> + Send;
    /// PUT a role assignment.
    fn put_role_assignment(
        &self,
        scope: &str,
        name: &str,
        assignment: &RoleAssignment,
    ) -> impl Future<Output = Result<RoleAssignment>> + Send;
    /// DELETE a role assignment by its full id.
    fn delete_role_assignment(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Sends a message to a user session (by its full id).
    fn send_message(
        &self,
        session_id: &str,
        message: &SendMessage,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Logs a user session off (by its full id); a session already gone is no error.
    fn log_off(&self, session_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Lets a session host take new sessions, or drains it.
    fn set_allow_new_session(
        &self,
        host_id: &str,
        allow: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The host pools of the resource group.
    fn list_host_pools(&self) -> impl Future<Output = Result<Vec<HostPool>>> + Send;
    /// The app attach packages of the resource group.
    fn list_packages(&self) -> impl Future<Output = Result<Vec<AppAttachPackage>>> + Send;
    /// The application groups of the resource group.
    fn list_application_groups(&self)
    -> impl Future<Output = Result<Vec<ApplicationGroup>>> + Send;
    /// The applications of an application group (by its id).
    fn list_applications(
        &self,
        group_id: &str,
    ) -> impl Future<Output = Result<Vec<Application>>> + Send;
    /// PUT an application of a RemoteApp application group (by the group's id).
    fn put_application(
        &self,
        group_id: &str,
        name: &str,
        application: &Application,
    ) -> impl Future<Output = Result<Application>> + Send;
    /// DELETE an application of an application group.
    fn delete_application(
        &self,
        group_id: &str,
        name: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every role assignment at, above or below the resource group: one list for the
    /// role assignments of every package and application group.
    fn list_role_assignments_in_resource_group(
        &self,
    ) -> impl Future<Output = Result<Vec<RoleAssignment>>> + Send;
    /// The virtual machines of a resource group (`/subscriptions/{s}/resourceGroups/{rg}`),
    /// every page: what their images and licence types say of the session hosts they are.
    fn list_virtual_machines(
        &self,
        resource_group_id: &str,
    ) -> impl Future<Output = Result<Vec<crate::arm::compute::VirtualMachine>>> + Send;
    /// The same client, waiting for its own request budget rather than failing at once
    /// when it is spent (for background reads such as the snapshot's refresh).
    fn patient(&self) -> Self
    where
        Self: Sized;
    /// The subscription, for role definition ids.
    fn subscription(&self) -> &str {
        &self.scope().subscription
    }
}
