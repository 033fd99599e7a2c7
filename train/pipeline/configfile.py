"""Parse and write pipeline.config files with protobuf text_format; no TensorFlow import.

The OD API's own `config_util.get_configs_from_pipeline_file` imports TensorFlow and raises a
bare ParseError; the driver needs the parse error as a finding (file, line, column) and the raw
text to point at line numbers and to diff against.
"""

from __future__ import annotations

import dataclasses
import re

from train import compat, errors, files
from train.files import windows_hint


class ConfigError(Exception):
    """The config cannot be used: the file (ConfigFileError) or its text (ConfigParseError)."""

    path: str
    fix: str


class ConfigFileError(ConfigError):
    """The config path is not a readable text file (missing, a folder, a FIFO, not UTF-8...)."""

    def __init__(self, path: str, reason: str):
        super().__init__(errors.clip(f"{path} {reason}"))
        self.path, self.reason = path, reason

    @property
    def fix(self) -> str:
        """What to do about the path."""
        if self.reason.startswith("is not UTF-8"):
            return "save the config as UTF-8 text (it is a protobuf text file)"
        if self.reason.startswith("cannot be read"):
            return "make the file readable for this user (chmod o+r, or run as its owner)"
        if self.reason == "does not exist":
            return "check the --pipeline_config path" + windows_hint(self.path)
        return "point --pipeline_config at the pipeline.config file itself"


class ConfigParseError(ConfigError):
    """The config text does not parse. `line`/`column` are 1-based when known."""

    def __init__(self, path: str, message: str, line: int | None = None, column: int | None = None):
        where = f"{path}:{line}:{column}" if line else path
        super().__init__(errors.clip(f"{where}: {message}"))
        self.path, self.detail, self.line, self.column = path, message, line, column

    @property
    def fix(self) -> str:
        """What to change, for the common causes."""
        if "escape" in self.detail and (
            "\\U" in self.detail or "unicodeescape" in self.detail or "\\" in self.detail
        ):
            return (
                "a Windows path in a quoted string: backslashes start escapes in the config "
                "format; write C:/Users/... with forward slashes (or double each backslash)"
            )
        if "has no field named" in self.detail:
            return (
                "remove or rename that field (typo, or a field of a newer OD API than the "
                "installed 2.8)"
            )
        return "fix the config text at that line and column"


@dataclasses.dataclass
class PipelineFile:
    """A parsed pipeline config and the text it came from."""

    path: str
    text: str
    proto: object  # pipeline_pb2.TrainEvalPipelineConfig

    def line_of(self, field: str, value: str | None = None, nth: int = 0) -> int | None:
        """1-based line of a field in the file (see find_line; None if absent)."""
        return find_line(self.text, field, value, nth)


def pipeline_pb2():
    """The OD API's pipeline_pb2 module (imports through the compat proto hook)."""
    compat.apply(with_tensorflow=False)
    from object_detection.protos import pipeline_pb2 as module

    return module


def parse_text(text: str, path: str = "<string>"):
    """Parses pipeline text into a TrainEvalPipelineConfig, raising ConfigParseError."""
    from google.protobuf import text_format

    proto = pipeline_pb2().TrainEvalPipelineConfig()
    try:
        text_format.Merge(text, proto)
    except text_format.ParseError as e:
        line, column = getattr(e, "_line", None), getattr(e, "_column", None)
        message = str(e)
        match = re.match(r"^(\d+):(\d+) : (.*)$", message, re.S)
        if match:
            line, column, message = int(match[1]), int(match[2]), match[3]
        elif line is not None:
            line, column = line + 1, (column or 0) + 1
        raise ConfigParseError(path, message.strip(), line, column) from None
    return proto


def load(path: str) -> PipelineFile:
    """Reads and parses a pipeline config file.

    Raises:
      ConfigFileError: the path is not a readable UTF-8 file (missing, a folder, a FIFO, ...).
      ConfigParseError: the text does not parse.
    """
    try:
        text = files.read_text(path)
    except files.InputError as e:
        raise ConfigFileError(path, e.reason) from None
    return PipelineFile(path=path, text=text, proto=parse_text(text, path))


def to_text(proto) -> str:
    """Canonical text of a config: what the driver writes and diffs."""
    from google.protobuf import text_format

    return text_format.MessageToString(proto)


def find_line(text: str, field: str, value: str | None = None, nth: int = 0) -> int | None:
    """1-based line of the `nth` use of `field` as a field name (with `value` on that line).

    Ignores comments; finds inline fields too (`reader { input_path: "x" }`).
    """
    pattern = re.compile(r"(^|[\s{,])" + re.escape(field) + r"\s*[:{]")
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0]
        if pattern.search(code) and (value is None or value in code):
            if seen == nth:
                return number
            seen += 1
    return None
