"""Exit codes and the one exception type that carries a user-facing, one-line error.

The codes are part of the CLI contract (README "Exit codes"); scripts and Slurm jobs branch on
them, so they never change meaning.
"""

EXIT_OK = 0
EXIT_USAGE = 2  # bad or missing flag, unreadable --pipeline_config
EXIT_PREFLIGHT = 3  # the preflight found errors it may not (or cannot) fix
EXIT_TRAINING = 4  # the training process failed
EXIT_INTERRUPTED = 5  # stopped by a signal (Ctrl-C, SIGTERM) after saving what could be saved
EXIT_INTERNAL = 70  # a bug in the driver itself (EX_SOFTWARE): please report it


class DriverError(Exception):
    """An error the user can fix; printed as one line, never as a traceback.

    Attributes:
      exit_code: the process exit code to use.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code
