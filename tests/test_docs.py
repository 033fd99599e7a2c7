"""The README and docs/ cannot drift from the code: links resolve, commands name real flags.

Each command shown in the README's code blocks is checked against what it calls: a make
target in the Makefile, a script in the tree, every --flag in the --helpfull of the module it
runs (the driver for `tfod-finetune`, `docker run ... tfod-finetune` and the sbatch scripts,
which pass their arguments to it). What the commands do is tested where each feature is.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shlex

from tests.conftest import ROOT, run_python

README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower())
    return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
    return {_anchor(line) for line in _read(path).splitlines() if re.match(r"#+ ", line)}


def test_the_readme_is_a_landing_page_that_starts_with_the_two_commands():
    text = _read(README)
    assert len(text.splitlines()) <= 200
    first_block = text.split("```")[1]
    assert re.search(r"^make demo\b", first_block, re.M)
    assert re.search(r"^make test\b", first_block, re.M)
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", text))
    assert {os.path.relpath(p, ROOT) for p in DOCS} <= linked  # every page reachable


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)\s]+)\)", _read(page)):
            if re.match(r"[a-z]+:", target):
                continue  # an external address
            path, _, fragment = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target}")
            elif fragment and resolved.endswith(".md") and fragment not in _anchors(resolved):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target} (no such heading)")
    assert broken == []


def _commands(text: str) -> list[list[str]]:
    """The shell commands in the fenced blocks, continuation lines joined, comments cut."""
    commands = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


@functools.cache
def _help(module: str) -> str:
    result = run_python(["-m", module, "--helpfull"])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stdout + result.stderr


def _flags(words: list[str]) -> list[str]:
    return [w[2:].split("=")[0] for w in words if w.startswith("--")]


def _module_and_args(words: list[str]) -> tuple[str, list[str]] | None:
    """Which of our modules a command runs, and the arguments that module gets."""
    while words and re.match(r"\w+=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if words[:2] == ["python", "-m"]:
        return words[2], words[3:]
    if words and words[0] == "tfod-finetune":
        return "train.finetune", words[1:]
    if words and words[0] == "sbatch":
        script = next(w for w in words if w.endswith(".sbatch"))
        assert os.path.isfile(os.path.join(ROOT, script)), script
        return "train.finetune", words[words.index(script) + 1 :]
    if words[:2] == ["docker", "run"]:
        image = words.index("tfod-finetune")
        return "train.finetune", words[image + 1 :]
    return None


def test_every_readme_command_names_real_targets_scripts_and_flags():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        targets = set(re.findall(r"^([\w-]+):", f.read(), re.M))
    commands = _commands(_read(README))
    assert len(commands) >= 10
    checked = 0
    for words in commands:
        if words[0] == "make":
            assert words[1] in targets, words
            checked += 1
            continue
        found = _module_and_args(words)
        assert found is not None, f"a README command no test checks: {' '.join(words)}"
        module, args = found
        helptext = _help(module)
        for flag in _flags(args):
            assert re.search(rf"--(\[no\])?{re.escape(flag)}\b", helptext), (module, flag)
        checked += 1
    assert checked == len(commands)
