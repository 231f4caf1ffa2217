// Package k8s holds no code: its directory holds the Kubernetes manifests
// (kustomize bases, overlays and components, and the observability
// resources), and its tests check them offline, and check the image's
// binary, without a cluster. The Kubernetes and kustomize modules they need
// stay out of the flashgate binary, which never imports this package.
package k8s
