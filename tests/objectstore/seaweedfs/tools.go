//go:build tools

// Package tools pins the SeaweedFS server (weed, with its S3 gateway) the mlkube tests run.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
