"""The trainer, ``mlkube train``: data in, a validated, versioned, safe model artifact out.

Stages, one module each, in the order a run goes through them: ``spec`` (the Model
manifest's ``spec.training`` as typed settings), ``data`` (read a URI into a frame),
``quality`` (the gate before fitting), ``pipeline`` (schema and estimator), ``slices``
(the safe filter language), ``validate`` (holdout, k-fold, metrics), ``summary`` (the
termination message), and ``command`` which wires them to the CLI.

Every user-fixable problem raises ``TrainingInputError``; ``command`` turns it into a
one-line message and exit code 2, anything else into exit code 1.
"""

from __future__ import annotations


class TrainingInputError(Exception):
    """The manifest, the data or the store is wrong in a way the user can fix."""
