"""Exit codes of the driver, and how errors become one short line.

The codes are part of the CLI contract (README "Exit codes"); scripts and Slurm jobs branch on
them, so they never change meaning.
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_USAGE = 2  # bad or missing flag; --pipeline_config or --report_json not a usable file
EXIT_PREFLIGHT = 3  # the preflight found errors it may not (or cannot) fix
EXIT_TRAINING = 4  # the training process failed
EXIT_INTERRUPTED = 5  # stopped by a signal (Ctrl-C, SIGTERM) after saving what could be saved
EXIT_FINISH = 6  # trained and saved, but the final evaluation or an export failed (or disagrees)
EXIT_INTERNAL = 70  # a bug in the driver itself (EX_SOFTWARE): please report it

TOKEN_LIMIT = 120  # longest run of non-space characters a message repeats whole
LINE_LIMIT = 1000  # longest message line


def clip(text: str, token_limit: int = TOKEN_LIMIT, line_limit: int = LINE_LIMIT) -> str:
    """`text` with overlong values cut in the middle, so a message stays readable.

    A 5 MB token in a config or a 1 MB path would otherwise be echoed whole into a one-line
    error; the start and end of a value are what identify it.
    """

    def cut(match: re.Match) -> str:
        token = match.group(0)
        keep = token_limit // 2
        return f"{token[:keep]}...[{len(token) - token_limit} more characters]...{token[-keep:]}"

    text = re.sub(r"\S{" + str(token_limit + 40) + ",}", cut, text)
    lines = [
        line if len(line) <= line_limit else f"{line[:line_limit]} ...[cut]"
        for line in text.split("\n")
    ]
    return "\n".join(lines)


def one_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first line` of an exception, cut at `limit` characters.

    TF errors often run to pages (e.g. "Found 260 Python objects ... [<tf.Variable ...
    numpy=array(...)"); reports and logs want the gist on one line.
    """
    name = type(error).__name__
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling layer"):
        # Keras wraps a layer's error: its own message is the next line.
        lines = [f"{lines[1].strip()} (in {lines[0].split('calling ', 1)[1].rstrip('.')})"]
    elif len(lines) > 1 and lines[0].strip() == "in user code:":
        # A tf.function / tf.data map: the traceback of the user code, the error last.
        raised = re.match(r"^(\w+(?:Error|Exception)): (.*)$", lines[-1].strip())
        name, lines = (raised[1], [raised[2]]) if raised else (name, [lines[-1].strip()])
    first = clip(lines[0]) if lines else ""
    if len(first) > limit:
        first = first[:limit] + " ..."
    return f"{name}: {first}"
