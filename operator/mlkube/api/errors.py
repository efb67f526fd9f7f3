"""The exit-code contract between mlkube's programs, the CLI and a Job's podFailurePolicy.

A program raises ``CommandError``; ``mlkube.cli`` prints it as one line and exits with its
code. Exit code 2 means input the user must fix, so the trainer's Job fails at once
instead of retrying (the operator's podFailurePolicy matches it); anything a retry could
cure (out of memory, a store or network that was away, a bug) exits 1.
"""

from __future__ import annotations

from typing import Final

EXIT_BAD_INPUT: Final = 2
EXIT_INTERNAL: Final = 1


class CommandError(Exception):
    """A failure the user can fix: printed as one line on stderr, exit code 2 unless given."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code
