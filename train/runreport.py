"""model_dir/report.html: the whole run on one self-contained page.

Built from what the run left in its folder, so it works for any run, an interrupted one
included: the driver's report (`run.json`, written at every stage), the config diff, the
plots and curves of the final evaluation (`plots/`), the contact sheet, the event files (for
training curves when the run never reached its end), and the folder's files. Every image is
embedded as a data URI and the styles are inline: the file opens from a laptop, a cluster
share or a mail attachment with no server and no network, and has no script. A missing part
says why it is missing instead of leaving a gap.

`build(model_dir, scalars)` returns the HTML text (pure: `scalars` gives the event-file
scalars, read by the caller); `python -m train.report MODEL_DIR` writes it.
"""

from __future__ import annotations

import base64
import html
import json
import os

from train import evalcurves
from train.launch import paths
from train.launch.paths import RunPaths
from train.reporting import RUN_JSON

REPORT = "report.html"
PLOTS = ("pr_curves", "f1_threshold", "confusion_matrix", "training_data")
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px;
       color: #1c2330; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px;
     border-bottom: 1px solid #d5dae3; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; max-width: 100%; }
td, th { border: 1px solid #d5dae3; padding: 3px 8px; text-align: left; vertical-align: top;
     overflow-wrap: anywhere; } th { background: #f1f3f7; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
pre.command { white-space: pre-wrap; overflow-wrap: anywhere; }
img { max-width: 100%; border: 1px solid #d5dae3; margin: 4px 0; }
.ok { color: #1a7f37; } .bad { color: #c62828; } .note { color: #5b6472; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; } .grid figure { margin: 0; flex: 1 1 320px; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _image(path: str | None, alt: str) -> str:
    if not path or not os.path.isfile(path):
        return f'<p class="note">{_e(alt)}: not drawn for this run.</p>'
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[list]) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _mib(size) -> str:
    return f"{size / 2**20:.1f} MiB" if isinstance(size, int | float) else "-"


def _header(model_dir: str, run: dict | None) -> str:
    outcome = (run or {}).get("outcome") or {}
    status = outcome.get("status", "unknown (no run.json: not run by the driver)")
    style = "ok" if status == "ok" else "bad"
    return (
        f"<h1>Run report: {_e(os.path.basename(os.path.abspath(model_dir)))}</h1>"
        f'<p>Status: <b class="{style}">{_e(status)}</b> '
        f"(exit code {_e(outcome.get('exit_code'))})<br>{_e(outcome.get('message', ''))}</p>"
        f"<p class=note>{_e(os.path.abspath(model_dir))}</p>"
    )


def _setup(run: dict | None, model_dir: str) -> str:
    if not run:
        return "<h2>Command and machine</h2><p class=note>No run.json in the folder.</p>"
    command = " ".join(run.get("command") or [])
    versions = [[_e(k), _e(v)] for k, v in sorted((run.get("versions") or {}).items()) if v]
    machine = [[_e(k), _e(v)] for k, v in (run.get("machine") or {}).items()]
    config = run.get("config") or {}
    summary = [
        [_e(k), _e(config.get(k))]
        for k in ("meta_arch", "feature_extractor", "num_classes", "batch_size", "num_steps")
        if k in config
    ]
    return (
        f'<h2>Command and machine</h2><pre class="command">{_e(command)}</pre>'
        f'<div class="grid"><div>{_table(["model", ""], summary)}</div>'
        f"<div>{_table(['machine', ''], machine)}</div>"
        f"<div>{_table(['package', 'version'], versions)}</div></div>"
    )


def _preflight(run: dict | None, model_dir: str) -> str:
    findings = (run or {}).get("findings") or []
    rows = [
        [
            _e(f.get("severity")),
            f"<code>{_e(f.get('code'))}</code>",
            _e(f.get("message")),
            _e(f.get("fix")),
        ]
        for f in findings
    ]
    part = _table(["severity", "code", "finding", "fix"], rows) if rows else "<p>No findings.</p>"
    diff_path = os.path.join(model_dir, "pipeline.diff")
    if os.path.isfile(diff_path):
        with open(diff_path, encoding="utf-8", errors="replace") as f:
            diff = _e(f.read())
        part += f"<p>The resolved config against yours (pipeline.diff):</p><pre>{diff}</pre>"
    return f"<h2>Preflight and the config's changes</h2>{part}"


def _restore(run: dict | None) -> str:
    training = ((run or {}).get("restore") or {}).get("training") or {}
    freeze = (run or {}).get("freeze") or {}
    if not training and not freeze:
        return "<h2>Restore and freezing</h2><p class=note>Not recorded for this run.</p>"
    rows = [
        [
            _e(c.get("name")),
            f"{_e(c.get('restored'))} / {_e(c.get('variables'))}",
            f"{_e(c.get('restored_parameters'))} / {_e(c.get('parameters'))}",
        ]
        for c in training.get("components") or []
    ]
    head = (
        f"<p>From <code>{_e(training.get('checkpoint'))}</code> "
        f"(type {_e(training.get('checkpoint_type'))}).</p>"
        if training
        else ""
    )
    table = _table(["component", "variables restored", "parameters restored"], rows)
    return (
        f"<h2>Restore and freezing</h2>{head}{table}"
        f"<p>Freezing: {_e(freeze.get('summary', 'not recorded'))}</p>"
    )


def _end_of_run(model_dir: str, run: dict | None) -> dict:
    """The final evaluation, its curves and the exports, the newest of each.

    `python -m train.evaluate` / `train.export` after the run rewrite the finish report
    (finish.json) and plots/curves.json but not the driver's run.json: what they wrote is
    what the folder's plots and files now show, so it wins; the driver's is the fallback.
    """
    finish = _read_json(RunPaths(model_dir).report(paths.FINISH)) or {}
    run = run or {}
    curves = os.path.join(model_dir, evalcurves.PLOTS_DIR, evalcurves.CURVES_FILE)
    return {
        "final": finish.get("eval") or (run.get("eval") or {}).get("final") or {},
        "curves": _read_json(curves) or run.get("curves") or {},
        "export": finish.get("export") or run.get("export") or {},
    }


def _metrics(end: dict) -> str:
    final, curves = end["final"], end["curves"]
    if not final:
        return "<h2>Final evaluation</h2><p class=note>The run has no final evaluation.</p>"
    metrics = final.get("metrics") or {}
    rows = [
        [_e(k), f"{v:.4f}"]
        for k, v in sorted(metrics.items())
        if k.startswith("DetectionBoxes_") and isinstance(v, int | float)
    ]
    ap50 = curves.get("ap50") or {}
    per_class = [
        [_e(name), _fmt(ap), _fmt(ap50.get(name))]
        for name, ap in sorted((final.get("per_class") or {}).items())
    ]
    threshold = (
        f"<p>Recommended score threshold: <b>{curves['threshold']:.2f}</b> (F1 "
        f"{curves.get('f1', 0):.2f} at IoU {curves.get('iou')}); train.predict's default for "
        "this run's models.</p>"
        if "threshold" in curves
        else ""
    )
    return (
        f"<h2>Final evaluation (step {_e(final.get('step'))})</h2>"
        f"<p>Checkpoint <code>{_e(final.get('checkpoint'))}</code></p>{threshold}"
        f'<div class="grid"><div>{_table(["metric", "value"], rows)}</div>'
        f"<div>{_table(['class', 'AP@[.5:.95]', 'AP@.5'], per_class)}</div></div>"
    )


def _fmt(value) -> str:
    if not isinstance(value, int | float) or value < 0:
        return "- (no eval boxes)"
    return f"{value:.4f}"


def _plots(model_dir: str, training_png: str | None) -> str:
    plots_dir = os.path.join(model_dir, evalcurves.PLOTS_DIR)
    figures = "".join(
        f"<figure>{_image(os.path.join(plots_dir, f'{name}.png'), name.replace('_', ' '))}</figure>"
        for name in PLOTS
    )
    return (
        f"<h2>Training curves</h2>{_image(training_png, 'training curves')}"
        f'<h2>Plots of the final evaluation</h2><div class="grid">{figures}</div>'
        "<h2>Contact sheet</h2><p>Ground truth in thick green, detections in their class's "
        "colour with their score; the pictures with the most missed and false boxes first.</p>"
        f"{_image(os.path.join(model_dir, 'eval', 'detections.png'), 'contact sheet')}"
    )


def _exports(end: dict) -> str:
    exports = end["export"]
    if not exports:
        return "<h2>Exports</h2><p class=note>Nothing was exported.</p>"
    rows = []
    for name, entry in exports.items():
        comparison = entry.get("comparison") or {}
        verdict = (
            '<span class="ok">verified</span>'
            if entry.get("verified")
            else '<span class="bad">not verified</span>: '
            + _e(entry.get("problem") or "inconclusive")
        )
        rows.append(
            [
                _e(entry.get("format", name)),
                verdict,
                f"{_e(comparison.get('matched'))} / {_e(comparison.get('compared'))}",
                _e(comparison.get("max_box_delta")),
                _e(comparison.get("max_score_delta")),
                _mib(entry.get("size_bytes")),
                f"{_e(entry.get('latency_ms'))} ms "
                f"(checkpoint {_e(entry.get('reference_latency_ms'))} ms)",
                f"<code>{_e(entry.get('path'))}</code>",
            ]
        )
    head = [
        "format",
        "verdict",
        "matched",
        "max |Δbox|",
        "max |Δscore|",
        "size",
        "CPU latency",
        "file",
    ]
    return f"<h2>Exports, each against the checkpoint</h2>{_table(head, rows)}"


def _files(model_dir: str) -> str:
    rows = []
    for name in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, name)
        kind = "folder" if os.path.isdir(path) else _mib(os.path.getsize(path))
        rows.append([f"<code>{_e(name)}</code>", kind])
    return f"<h2>Files in the run's folder</h2>{_table(['name', 'size'], rows)}"


def build(model_dir: str, training_png: str | None = None) -> str:
    """The page's HTML.

    `training_png` stands in for plots/training_curves.png: drawn by the caller from the
    event files when the run did not draw one.
    """
    run = _read_json(os.path.join(model_dir, RUN_JSON))
    end = _end_of_run(model_dir, run)
    training = training_png or os.path.join(
        model_dir, evalcurves.PLOTS_DIR, evalcurves.TRAINING_CURVES_FILE
    )
    body = "".join(
        (
            _header(model_dir, run),
            _setup(run, model_dir),
            _preflight(run, model_dir),
            _restore(run),
            _metrics(end),
            _plots(model_dir, training),
            _exports(end),
            _files(model_dir),
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(os.path.basename(os.path.abspath(model_dir)))}: run report</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
