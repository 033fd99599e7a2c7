"""Test helpers that write real TF checkpoints with chosen variable names and shapes."""

from __future__ import annotations

import os

_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def demo_driver_args(
    assets, model_dir, *extra, config=None, checkpoint=None, final_eval=False
) -> list[str]:
    """`-m train.finetune ...` arguments (for run_python) that fine-tune on the demo assets.

    `config` defaults to the embedded demo config, `checkpoint` to the stand-in zoo folder.
    The final evaluation (on by default with eval data, ~20 s) is off unless `final_eval`:
    tests/test_finish.py tests it; the others test what they name.
    """
    from tests.conftest import DEMO_CONFIG

    base = [
        f"--pipeline_config={config or DEMO_CONFIG}",
        f"--model_dir={model_dir}",
        f"--checkpoint={checkpoint or assets['zoo']}",
        f"--label_map={assets['label_map']}",
        f"--train_input_path={assets['train']}",
        f"--eval_input_path={assets['eval']}",
        *([] if final_eval else ["--nofinal_eval"]),
    ]
    return ["-m", "train.finetune", *with_flags(base, *extra)]


def _flag_name(arg: str) -> str:
    name = arg.lstrip("-").split("=", 1)[0]
    return name[2:] if name.startswith("no") and name[2:] in ("final_eval", "eval") else name


def with_flags(args: list[str], *extra: str) -> list[str]:
    """`args` with `extra` added, each replacing a flag of the same name.

    A flag given twice is a usage error; only the record paths may repeat.
    """
    result = list(args)
    for arg in extra:
        name = _flag_name(arg)
        if arg.startswith("--") and name not in ("train_input_path", "eval_input_path"):
            result = [a for a in result if _flag_name(a) != name]
        result.append(arg)
    return result


def checkpoint_tensors(prefix: str) -> dict:
    """{key: value} of the model/ variables of a checkpoint (no optimizer slots)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/") and name.endswith(_VALUE) and "OPTIMIZER_SLOT" not in name
    }


def model_variables(prefix: str) -> dict[str, list[int]]:
    """{object path: shape} of the model/ variables of a checkpoint (no slots)."""
    import tensorflow as tf

    return {
        n[: -len(_VALUE)]: s
        for n, s in tf.train.list_variables(prefix)
        if n.startswith("model/") and n.endswith(_VALUE) and ".OPTIMIZER_SLOT" not in n
    }


def write_checkpoint(
    directory: str,
    variables: dict[str, list[int]],
    step: int | None = None,
    optimizer: str | None = None,
    values: dict | None = None,
) -> str:
    """Writes a real object-based checkpoint whose variables have exactly these paths.

    With `step`, it looks like a model_dir training checkpoint (`step`, optimizer state and the
    `checkpoint` state file written by CheckpointManager); with `optimizer` ('momentum' or
    'adam'), one real optimizer update creates its slot variables. `values` gives some
    variables (by path) their contents; the others are zeros.
    """
    import tensorflow as tf

    roots: dict[str, tf.Module] = {}
    leaves = []
    for path, shape in variables.items():
        root, *parts = path.split("/")
        node = roots.setdefault(root, tf.Module())
        for part in parts[:-1]:
            child = getattr(node, part, None) if part in vars(node) else None
            if child is None:
                child = tf.Module()
                setattr(node, part, child)
            node = child
        value = (values or {}).get(path)
        variable = tf.Variable(tf.zeros(shape) if value is None else value, name=parts[-1])
        setattr(node, parts[-1], variable)
        leaves.append(variable)
    objects = dict(roots)
    if step is not None:
        objects["step"] = tf.Variable(step, dtype=tf.int64)
    if optimizer:
        legacy = tf.keras.optimizers.legacy  # what the OD API's optimizer_builder creates
        opt = legacy.SGD(0.1, momentum=0.9) if optimizer == "momentum" else legacy.Adam(0.1)
        opt.apply_gradients([(tf.ones_like(v), v) for v in leaves])
        objects["optimizer"] = opt
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**objects), directory, max_to_keep=1)
    os.makedirs(directory, exist_ok=True)
    return manager.save()


def zero_learning_rate_config(source: str, out: str, freeze_batchnorm: bool = False) -> str:
    """A copy of `source` with a constant learning rate of 0: training changes no weight.

    Batch-norm moving statistics still move, unless `freeze_batchnorm` (the model's own
    field): then every checkpoint of the run holds the same model. Lets tests tell restored
    weights from fresh ones exactly after real training steps.
    """
    from train import files
    from train.pipeline import configfile, fields

    config = configfile.load(source).proto
    optimizer = config.train_config.optimizer
    chosen = getattr(optimizer, optimizer.WhichOneof("optimizer"))
    chosen.learning_rate.constant_learning_rate.learning_rate = 0.0
    if freeze_batchnorm:
        fields.model_message(config).freeze_batchnorm = True
    files.write_atomic(out, configfile.to_text(config))
    return out


def small_image_config(source: str, out: str, size: int = 128) -> str:
    """A copy of `source` resizing images to size x size: the same model, ~6x cheaper steps.

    For tests that run several training processes at once on a 2-core machine (Slurm,
    multi-worker). The checkpoint's weights do not depend on the input size.
    """
    from train import files
    from train.pipeline import configfile

    config = configfile.load(source).proto
    resizer = config.model.ssd.image_resizer.fixed_shape_resizer
    resizer.height = resizer.width = size
    files.write_atomic(out, configfile.to_text(config))
    return out


SMALL_SIZE = 128  # the input size of the tests whose subject is not the input size


def small_demo_config(out_dir, size: int = SMALL_SIZE) -> str:
    """The embedded demo config line for line, resizing images to size x size.

    The same model (its checkpoints and variables do not depend on the input size), the same
    text and line numbers (findings that name a line still point at the same field), at ~6x
    cheaper steps, evaluations and exports: for the tests whose subject is not the input size.
    """
    from tests.conftest import DEMO_CONFIG

    with open(DEMO_CONFIG, encoding="utf-8") as f:
        text = f.read()
    shipped = "fixed_shape_resizer { height: 320 width: 320 }"
    assert text.count(shipped) == 1, "the demo config's resizer line changed"
    target = os.path.join(str(out_dir), f"demo_{size}x{size}.config")
    with open(target, "w", encoding="utf-8") as f:
        f.write(text.replace(shipped, f"fixed_shape_resizer {{ height: {size} width: {size} }}"))
    return target


def split_records(source: str, out_prefix: str, shards: int) -> str:
    """Deals the records of `source` round-robin into `shards` files; returns their glob."""
    import tensorflow as tf

    from train import records

    writers = [tf.io.TFRecordWriter(f"{out_prefix}-{i:05d}-of-{shards:05d}") for i in range(shards)]
    try:
        for i, payload in enumerate(records.read_records(source, 10**9)):
            writers[i % shards].write(payload)
    finally:
        for writer in writers:
            writer.close()
    return f"{out_prefix}-?????-of-{shards:05d}"


def zoo_config_copy(shared_fixtures: str, name: str, out_dir) -> str:
    """A TF2 zoo config as shipped, its keypoint label map path pointed at the real COCO one.

    The same text for every test, so their stand-in signatures share one cache entry.
    """
    keypoints = os.path.join(shared_fixtures, "label_maps", "mscoco_with_keypoints_label_map.pbtxt")
    with open(os.path.join(shared_fixtures, "zoo_tf2", name), encoding="utf-8") as f:
        text = f.read()
    target = os.path.join(str(out_dir), name)
    with open(target, "w", encoding="utf-8") as f:
        f.write(
            text.replace(
                'keypoint_label_map_path: "PATH_TO_BE_CONFIGURED"',
                f'keypoint_label_map_path: "{keypoints}"',
            )
        )
    return target


def signature_cache() -> str:
    """Where tests.standin_signatures caches zoo stand-in variable lists."""
    cache = os.environ.get("TFOD_CACHE_DIR", os.path.expanduser("~/.cache/tfod-finetune"))
    return os.path.join(cache, "standin-signatures")


def standin_signatures(configs: list[str]) -> dict[str, str]:
    """{config: its cached signature file}, building the missing ones in a child process."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.standin_signatures import cache_path

    result = subprocess.run(
        [sys.executable, "-m", "tests.standin_signatures", signature_cache(), *configs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {c: cache_path(signature_cache(), c) for c in configs}


def standin_checkpoint(signature: str, directory: str) -> str:
    """A zoo-layout checkpoint with the signature's model variables (zeros); its prefix."""
    import json

    with open(signature, encoding="utf-8") as f:
        variables = {
            n[: -len(_VALUE)]: s
            for n, s in json.load(f)
            if n.startswith("model/") and n.endswith(_VALUE)
        }
    return write_checkpoint(os.path.join(directory, "checkpoint"), variables)


def start_driver(args: list[str], log_path):
    """The driver (run_python's arguments) in the background, its stderr in `log_path`.

    A file, not a pipe: nobody reads the output while the run goes.
    """
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "w") as out:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stderr=out)


def wait_for_checkpoint(driver, model_dir, log_path, name: str = "ckpt-2", timeout: float = 300):
    """Waits until model_dir holds checkpoint `name`; fails with the log if the driver ends."""
    import glob
    import time

    deadline = time.monotonic() + timeout
    while not glob.glob(os.path.join(model_dir, f"{name}.index")):
        assert driver.poll() is None, open(log_path).read()[-3000:]
        assert time.monotonic() < deadline, f"no {name} in {model_dir} after {timeout} s"
        time.sleep(0.2)


def training_child(model_dir) -> int:
    """The pid of the training child of the run in model_dir."""
    import subprocess

    spec = os.path.join(model_dir, "train_spec.json")
    found = subprocess.run(["pgrep", "-f", f"train.tf.child {spec}"], capture_output=True)
    (child,) = [int(pid) for pid in found.stdout.split()]
    return child


def step_by_step_args(assets, model_dir, work, steps: int, checkpoint_every: int) -> list[str]:
    """run_python arguments for the demo at 128 px, batch 1, one step per iteration.

    For the tests that interrupt, kill or starve a run part-way (the small config is written
    into `work`).
    """
    return demo_driver_args(
        assets,
        model_dir,
        f"--num_train_steps={steps}",
        "--batch_size=1",
        f"--checkpoint_every_n={checkpoint_every}",
        "--num_steps_per_iteration=1",
        config=small_demo_config(work),
    )


def chromium() -> str:
    """Debian's Chromium (tests/browser/chromium_up.sh installs it as root), or skip."""
    import subprocess

    from tests.conftest import skip_unless_required

    up = subprocess.run(
        ["bash", os.path.join(os.path.dirname(__file__), "browser", "chromium_up.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if up.returncode == 77:
        skip_unless_required(up.stderr.strip().splitlines()[-1])
    assert up.returncode == 0, up.stderr[-3000:]
    return up.stdout.strip().splitlines()[-1]


def render_in_chromium(path: str) -> dict:
    """Opens a local page in headless Chromium; what a reader's browser would see and do.

    Returns the console errors and page exceptions, every URL the page requested, each
    image's (alt, loaded, natural width) and the section headings.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium(), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto("file://" + os.path.abspath(path), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "all => all.map(i => [i.alt, i.complete, i.naturalWidth])"
            )
            headings = page.eval_on_selector_all("h2", "all => all.map(h => h.textContent)")
            title = page.title()
        finally:
            browser.close()
    return {
        "errors": errors,
        "requests": requests,
        "images": images,
        "headings": headings,
        "title": title,
    }
