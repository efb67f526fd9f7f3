"""The drift checker: reference profile vs a live window, per-feature tests, verdict, report."""
