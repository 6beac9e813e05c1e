//! appattach-operator: Azure Virtual Desktop app attach, declared in Kubernetes.
//!
//! The crate is laid out as rooms: [`resources`] holds the three kinds an administrator
//! applies; [`cli`] the `appattach` command; [`controlplane`] a local Kubernetes control
//! plane (etcd and kube-apiserver) for development and for the integration tests.
#![forbid(unsafe_code)]

pub mod arm;
pub mod azure;
pub mod backend;
pub mod budget;
pub mod cli;
pub mod controller;
pub mod controlplane;
pub mod domain;
pub mod emulator;
pub mod gitops;
pub mod inspect;
pub mod resources;
