//! The controller against a real kube-apiserver and the emulator over HTTP.

#[allow(dead_code)]
#[path = "../apiserver/support.rs"]
mod support;

mod harness;

#[allow(dead_code)]
#[path = "../azure/entra.rs"]
mod entra;

mod azure;

mod cluster;

mod errors;
mod faults;
mod lifecycle;
mod msix;
mod one_pass;
mod plan;
mod readme;
mod reconcile;
mod remote_app;
mod rollout;
mod rollout_support;
mod sequences;
mod session_host_os;
mod snapshot;
mod throttling;
mod trust;
mod validation;
