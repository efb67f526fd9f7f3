"""The operator: kopf watches feed a work queue; reconcilers compare desired with existing.

Layout, top to bottom (import-linter enforces the order; docs/architecture.md):
``main`` (kopf wiring and the ``mlkube operator`` command), ``handlers`` (one reconciler
per kind), the reconcile steps ``rollout``, ``schedule``, ``status``, ``watches`` and
``leader``, ``children`` (create/update/unchanged/delete-if-owned, Events), the pure
``builders``, ``registry`` and ``versions``, then ``promotion``, ``spec``, ``informer``
(cache and work queue), ``kube`` (a small async API client), ``metrics`` and ``settings``.
Conditions and the status contracts are in ``mlkube.api``.
"""
