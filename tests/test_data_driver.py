"""The driver's --data: converted folders train through the real train_loop; raw ones convert."""

from __future__ import annotations

import glob
import os

import pytest

from tests import datasets
from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import small_demo_config, with_flags
from train import errors

pytestmark = [pytest.mark.slow, pytest.mark.data]


def _driver(assets, model_dir, data, *extra, config=DEMO_CONFIG):
    return run_python(
        with_flags(
            [
                "-m",
                "train.finetune",
                f"--pipeline_config={config}",
                f"--model_dir={model_dir}",
                f"--checkpoint={assets['zoo']}",
                f"--data={data}",
                "--num_train_steps=5",
                "--batch_size=2",
                "--nofinal_eval",
            ],
            *extra,
        )
    )


# Trained five steps through train_loop; the other formats' records (the same converter's)
# are rehearsed: the model built and one batch pulled through the real input pipeline.
TRAINED = ("coco", "yolo")


@pytest.fixture(scope="module")
def runs(demo_assets, tmp_path_factory):
    """Each format through the driver: VOC, COCO, CSV converted first; YOLO raw."""
    root = tmp_path_factory.mktemp("data_driver")
    small = small_demo_config(root)  # --data is the subject, not the input size
    done = {}
    for kind, write in sorted(datasets.WRITERS.items()):
        source = write(str(root / kind), datasets.specs(6))
        data = source
        if kind != "yolo":
            data = str(root / f"{kind}_records")
            result = run_python(["-m", "train.data", "convert", source, f"--out={data}"])
            assert result.returncode == 0, result.stderr[-2000:]
        model_dir = root / f"model_{kind}"
        done[kind] = {
            "source": source,
            "data": data,
            "model_dir": str(model_dir),
            "config": small,
            "result": _driver(
                demo_assets,
                model_dir,
                data,
                *(() if kind in TRAINED else ("--rehearse",)),
                config=small,
            ),
        }
    return done


@pytest.mark.parametrize("kind", sorted(datasets.WRITERS))
def test_the_driver_takes_each_format(runs, kind):
    from train.pipeline import configfile

    run = runs[kind]
    result = run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    if kind in TRAINED:
        assert "step 5/5" in result.stderr
        assert os.path.isfile(os.path.join(run["model_dir"], "ckpt-2.index"))  # step 0, step 5
    else:
        assert "rehearsal passed" in result.stderr
    folder = run["data"] if kind != "yolo" else os.path.join(run["model_dir"], "data")
    config = configfile.load(os.path.join(run["model_dir"], "pipeline.config")).proto
    reader = config.train_input_reader
    assert list(reader.tf_record_input_reader.input_path) == [
        os.path.join(folder, "train-*.record")
    ]
    assert reader.label_map_path == os.path.join(folder, "label_map.pbtxt")
    assert config.model.ssd.num_classes == 4  # the dataset's classes (zebra included)
    assert "restored" in result.stderr


def test_a_raw_folder_is_converted_once_and_reused_until_it_changes(runs, demo_assets):
    run = runs["yolo"]
    assert (
        f"--data: converting {run['source']} into {run['model_dir']}/data" in run["result"].stderr
    )
    records = sorted(glob.glob(os.path.join(run["model_dir"], "data", "*.record")))
    stamps = [os.stat(p).st_mtime_ns for p in records]
    more = ("--preflight_only", "--num_train_steps=10")  # the run there finished at step 5
    again = _driver(demo_assets, run["model_dir"], run["source"], *more, config=run["config"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "converted earlier from" in again.stderr and "converting" not in again.stderr
    assert [os.stat(p).st_mtime_ns for p in records] == stamps
    label = glob.glob(os.path.join(run["source"], "labels", "train", "*.txt"))[0]
    with open(label, "a") as f:
        f.write("0 0.5 0.5 0.2 0.2\n")
    changed = _driver(demo_assets, run["model_dir"], run["source"], *more, config=run["config"])
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "--data: converting" in changed.stderr


def test_data_with_explicit_records_is_a_usage_error(demo_assets, tmp_path):
    result = _driver(
        demo_assets, tmp_path / "m", tmp_path, f"--train_input_path={demo_assets['train']}"
    )
    assert result.returncode == errors.EXIT_USAGE
    assert "--data sets the records and label map; drop --train_input_path" in result.stderr
    assert not (tmp_path / "m").exists()


def test_unusable_data_is_one_line(demo_assets, tmp_path):
    result = _driver(demo_assets, tmp_path / "m", tmp_path / "nowhere")
    assert result.returncode == errors.EXIT_USAGE and "Traceback" not in result.stderr
    assert f"--data {tmp_path / 'nowhere'}: no such file or folder" in result.stderr
    only_missing = datasets.write_csv(
        str(tmp_path / "csv"), [s for s in datasets.specs() if s.kind == "missing"]
    )
    result = _driver(demo_assets, tmp_path / "m2", only_missing)
    assert result.returncode == errors.EXIT_PREFLIGHT and "Traceback" not in result.stderr
    assert "no usable training image" in result.stderr


def test_fresh_keeps_the_converted_data_in_place(tmp_path):
    from train.launch import rundir

    model_dir = tmp_path / "model"
    (model_dir / "data").mkdir(parents=True)
    (model_dir / "data" / "train-00000-of-00001.record").write_bytes(b"x")
    (model_dir / "ckpt-1.index").write_bytes(b"y")
    aside = rundir.move_aside(str(model_dir))
    assert os.path.isfile(os.path.join(aside, "ckpt-1.index"))
    assert (model_dir / "data" / "train-00000-of-00001.record").read_bytes() == b"x"
    assert not (model_dir / "ckpt-1.index").exists()
    inside = rundir.inputs_inside(
        str(model_dir), [str(model_dir / "data" / "label_map.pbtxt"), str(model_dir / "x.config")]
    )
    assert inside == [str(model_dir / "x.config")]
