//go:build tools

// Package helm pins the Helm CLI the chart tests run (helm lint, helm template): the
// cmd/helm package of helm.sh/helm/v3. build.sh compiles it; nothing here is imported by
// the operator. A module of its own, apart from tests/controlplane, so Helm's k8s.io
// versions never have to agree with the control plane's.
package helm

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
