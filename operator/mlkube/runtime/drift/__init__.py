"""The drift checker: reference profile vs a live window, per-feature tests, verdict, report.

``check`` runs one check (``window`` reads, ``accumulate`` summarises, ``evaluate``
decides, ``report`` writes); ``command`` is the CLI on local paths and ``incluster`` the
Monitor's CronJob pod, which both call ``check.run_check``.
"""
