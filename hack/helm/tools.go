//go:build tools

// Package tools pins helm's main package so `go build` can find it.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
