//! Everything the API server decides, tested against a real kube-apiserver with etcd:
//! the CRDs install, the examples apply and read back, the schema and CEL rules refuse bad
//! manifests with messages that name the field, kubectl shows what users expect, and the
//! Helm chart installs what deploy/ does.
//!
//! One control plane serves this whole test binary; each test works in its own namespace.

mod support;

mod crds;
mod examples;
mod helm;
mod kubectl;
mod transitions;
mod validation;
