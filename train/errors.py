"""Exit codes of the driver.

The codes are part of the CLI contract (README "Exit codes"); scripts and Slurm jobs branch on
them, so they never change meaning.
"""

EXIT_OK = 0
EXIT_USAGE = 2  # bad or missing flag, unreadable --pipeline_config
EXIT_PREFLIGHT = 3  # the preflight found errors it may not (or cannot) fix
EXIT_TRAINING = 4  # the training process failed
EXIT_INTERRUPTED = 5  # stopped by a signal (Ctrl-C, SIGTERM) after saving what could be saved
EXIT_INTERNAL = 70  # a bug in the driver itself (EX_SOFTWARE): please report it
