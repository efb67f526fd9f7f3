"""Test harness: a real Kubernetes control plane built from Go modules, run on loopback."""
