"""One reconciler per kind: read the cache, ask the builders, ensure children, write status."""
