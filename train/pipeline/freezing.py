"""Which variables a run trains: `freeze_variables`, `update_trainable_variables`, `--freeze`.

The TF1 trainer honoured both config fields; the TF2 loop (`model_lib_v2.eager_train_step`)
trains `detection_model.trainable_variables` and ignores them (tensorflow/models #10167,
#9548; the fix, PR #10321, was never merged). The training child applies the rule decided
here to that list. Semantics as in TF1: `update_trainable_variables` keeps only variables
whose name matches one of its patterns (`re.match`, from the start), then
`freeze_variables` drops those matching one of its own. TF2 names are Keras layer paths
(`block_3_expand/kernel`, `WeightSharedConvolutionalBoxPredictor/...`), so TF1 patterns such
as `FeatureExtractor/MobilenetV2` may match nothing: that is reported, never silent.

`--freeze backbone[,neck]` freezes by model component (train.checkpoint.components, the
table the restore report uses) on top of the config's patterns; `--freeze none` trains
every variable, the config's patterns notwithstanding. Batch-norm statistics are not
variables any optimizer trains: they follow the config's `freeze_batchnorm`, as without this.
TF-free.
"""

from __future__ import annotations

import dataclasses
import re

from train.checkpoint import components

CHOICES = ("backbone", "neck")


class FreezeError(ValueError):
    """A --freeze value no run can honour (a usage error)."""


def parse_flag(value: str | None) -> str:
    """The canonical --freeze value: "" (the config decides), "none", or "backbone,neck"."""
    if value is None:
        return ""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if parts == ["none"]:
        return "none"
    unknown = [p for p in parts if p not in CHOICES]
    if not parts or unknown:
        raise FreezeError(
            f"--freeze {value!r}: use none, or components from {', '.join(CHOICES)} "
            "(e.g. --freeze backbone,neck)"
        )
    return ",".join(c for c in CHOICES if c in parts)


@dataclasses.dataclass(frozen=True)
class FreezeRule:
    """What decides whether a trainable variable trains."""

    train_only: tuple[str, ...] = ()  # update_trainable_variables
    freeze: tuple[str, ...] = ()  # freeze_variables
    components: tuple[str, ...] = ()  # --freeze

    @property
    def active(self) -> bool:  # noqa: D102
        return bool(self.train_only or self.freeze or self.components)

    def describe(self) -> str:
        """`freeze_variables ['a'], --freeze backbone` (what the rule is made of)."""
        parts = []
        if self.train_only:
            parts.append(f"update_trainable_variables {list(self.train_only)}")
        if self.freeze:
            parts.append(f"freeze_variables {list(self.freeze)}")
        if self.components:
            parts.append(f"--freeze {','.join(self.components)}")
        return ", ".join(parts) or "nothing frozen"


def rule(train_config, flag: str) -> FreezeRule:
    """The rule for a run: the config's two fields and the canonical --freeze value."""
    if flag == "none":
        return FreezeRule()
    return FreezeRule(
        tuple(p for p in train_config.update_trainable_variables if p),
        tuple(p for p in train_config.freeze_variables if p),
        tuple(c for c in flag.split(",") if c),
    )


def variable_name(name: str) -> str:
    """A variable's name as TF1 patterns were matched against it (`op.name`: no `:0`)."""
    return name.rsplit(":", 1)[0] if re.search(r":\d+$", name) else name


def decide(the_rule: FreezeRule, variables: list[tuple[str, str]]) -> tuple[list[bool], list[str]]:
    """([trains?] per (name, checkpoint key), the patterns that matched no variable)."""
    matched: set[str] = set()

    def hits(patterns, name):
        found = [p for p in patterns if re.match(p, name)]
        matched.update(found)
        return bool(found)

    trains = []
    for name, key in variables:
        name = variable_name(name)
        keep = True
        if the_rule.train_only and not hits(the_rule.train_only, name):
            keep = False
        if hits(the_rule.freeze, name):
            keep = False
        if components.component_of(key) in the_rule.components:
            keep = False
        trains.append(keep)
    unmatched = [p for p in (*the_rule.train_only, *the_rule.freeze) if p not in matched]
    return trains, unmatched


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n}"


def report(the_rule: FreezeRule, variables, trains: list[bool], unmatched: list[str]) -> dict:
    """The freeze report: counts, per-component frozen/total, the one-line summary.

    `variables` are (name, checkpoint key, parameter count) of the trainable variables.
    """
    per: dict[str, list[int]] = {}
    for (_, key, _), keep in zip(variables, trains, strict=True):
        counts = per.setdefault(components.component_of(key), [0, 0])
        counts[0] += not keep
        counts[1] += 1
    total = sum(size for _, _, size in variables)
    trained = sum(size for (_, _, size), keep in zip(variables, trains, strict=True) if keep)
    frozen = {
        name: counts
        for name, counts in sorted(per.items(), key=lambda kv: components.rank(kv[0]))
        if counts[0]
    }
    line = f"training {_millions(trained)}/{_millions(total)} parameters"
    if frozen:
        listed = ", ".join(f"{name} {f}/{t}" for name, (f, t) in frozen.items())
        line += f" (frozen: {listed})"
    else:
        line += " (nothing frozen)"
    return {
        "summary": line,
        "rule": the_rule.describe(),
        "trained_variables": sum(trains),
        "variables": len(trains),
        "trained_parameters": trained,
        "parameters": total,
        "frozen": frozen,
        "unmatched": unmatched,
    }
