"""The one exception type that reaches the user as a single line, and the exit code of one that
was not foreseen."""

INPUT_ERROR_EXIT = 2
"""A HarnessError's: bad input or a condition the user can act on, refused before any work."""

INTERNAL_ERROR_EXIT = 70
"""An exception the harness did not foresee: a bug, never a verdict. Distinct from every code a
command gives on purpose (the gate's 1 says a check failed), so that CI cannot read a crash as a
regression; 70 is sysexits.h's EX_SOFTWARE."""


class HarnessError(Exception):
    """Bad input or an unrecoverable condition the user can act on.

    The CLI prints `harness: <message>` and exits with `exit_code`; no traceback.
    The message names the file or flag and what was expected.
    """

    def __init__(self, message: str, exit_code: int = INPUT_ERROR_EXIT) -> None:
        super().__init__(message)
        self.exit_code = exit_code
