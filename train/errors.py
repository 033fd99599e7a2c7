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


def one_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first line` of an exception, cut at `limit` characters.

    TF errors often run to pages (e.g. "Found 260 Python objects ... [<tf.Variable ...
    numpy=array(...)"); reports and logs want the gist on one line.
    """
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[:limit] + " ..."
    return f"{type(error).__name__}: {first}"
