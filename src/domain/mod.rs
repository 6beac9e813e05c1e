//! The pure core: plain types and functions, no Kubernetes, no HTTP. Everything here is
//! tested without any server.

pub mod directory;
pub mod entitlements;
pub mod host_os;
pub mod naming;
