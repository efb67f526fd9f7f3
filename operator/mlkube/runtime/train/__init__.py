"""The trainer, ``mlkube train``: data in, a validated, versioned, safe model artifact out.

Stages, one module each, in the order a run goes through them: ``spec`` (the Model
manifest's ``spec.training`` as typed settings), ``data`` (read a URI into a frame),
``quality`` (the gate before fitting), ``pipeline`` (schema and estimator), ``slices``
(the safe filter language), ``validate`` (holdout, k-fold, metrics), ``run`` (the stages
in order), ``record`` (metadata and summary), and ``command`` which wires them to the CLI;
the summary's shape lives in ``mlkube.api.summary``.

Every user-fixable problem raises ``TrainingInputError``; ``command`` turns it into a
one-line message and exit code 2; ``TrainingUnavailableError`` (a dependency that was
away) and anything else exit 1, which the Job may retry.
"""

from __future__ import annotations


class TrainingInputError(Exception):
    """The manifest, the data or the store is wrong in a way the user can fix."""


class TrainingUnavailableError(Exception):
    """Something the run depends on was unavailable (network, store); a retry may succeed."""
