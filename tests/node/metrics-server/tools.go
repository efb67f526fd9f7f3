//go:build tools

// Package tools pins metrics-server, which the real node's HPA test builds from its module.
package tools

import (
	_ "sigs.k8s.io/metrics-server/cmd/metrics-server"
)
