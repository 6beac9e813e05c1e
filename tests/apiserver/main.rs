//! Everything the API server decides, tested against a real kube-apiserver with etcd:
//! the CRDs install, the examples apply and read back, the schema and CEL rules refuse bad
//! manifests with messages that name the field, and kubectl shows what users expect.
//!
//! One control plane serves this whole test binary; each test works in its own namespace.

mod support;

mod crds;
mod examples;
mod kubectl;
mod transitions;
mod validation;
