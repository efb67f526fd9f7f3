"""The operator: kopf watches feed a work queue; reconcilers compare desired with existing.

Layout: ``settings`` (environment), ``conditions`` and ``promotion`` (pure decisions),
``builders`` (pure manifests), ``kube`` (a small async API client), ``informer`` (cache
and work queue), ``reconcile`` (create/update/unchanged), ``handlers`` (one reconciler
per kind), ``main`` (kopf wiring and the ``mlkube operator`` command).
"""
