"""The one exception type that reaches the user as a single line."""


class HarnessError(Exception):
    """Bad input or an unrecoverable condition the user can act on.

    The CLI prints `harness: <message>` and exits with `exit_code`; no traceback.
    The message names the file or flag and what was expected.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
