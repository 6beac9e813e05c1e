//go:build tools

// Package controlplane pins the real Kubernetes control-plane binaries the
// integration tests run: kube-apiserver and kubectl from k8s.io/kubernetes, and
// etcd from go.etcd.io/etcd/server/v3 (its root package is the etcd main).
// build.sh compiles them; nothing here is imported by the operator.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
