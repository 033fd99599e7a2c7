"""train.predict's runner with a model whose later calls end first: the order still holds.

The runner (train/predicting/pipeline.py) is TF-free; the model here is a plain function of
the picture (its colour gives its number), slow on even pictures, so a second call in flight
ends before the first. The real models run through the same runner in tests/test_demo.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from train.predicting import outputs, pipeline
from train.predicting import plan as plans
from train.tf import predictors
from train.verify import Detections, Staged

PICTURES = 12


class _Numbered:
    """A model that finds one box whose score is the picture's number, noting its overlap."""

    def __init__(self):
        self.lock, self.running, self.most, self.threads = threading.Lock(), 0, 0, set()

    def prepare(self, image: np.ndarray) -> int:
        return int(image[0, 0, 0]) // 10

    def infer(self, number: int) -> Detections:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        time.sleep(0.03 if number % 2 == 0 else 0.001)  # the next call ends first
        with self.lock:
            self.running -= 1
        box = [0.1, 0.2, 0.5, 0.6]
        return Detections.of([box], [1], [0.5 + number / 100], 1)


def _folder(tmp_path) -> str:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for n in range(PICTURES):
        picture = np.full((40 + n, 60, 3), n * 10, np.uint8)  # each its own size
        Image.fromarray(picture).save(folder / f"p{n:02d}.png")
    return str(folder)


def _predicted(tmp_path, predictor):
    """(the items, their Collector, the annotated folder) of run_images on PICTURES pictures."""
    items, skipped = plans.inputs((_folder(tmp_path),))
    assert len(items) == PICTURES and not skipped
    annotated = outputs.prepare_out(str(tmp_path / "out"))
    collector = outputs.Collector(predictor.names)
    progress = pipeline.Progress(PICTURES, enabled=False)
    done = pipeline.run_images(items, predictor, 0.3, annotated, collector, [], progress)
    assert done == PICTURES and progress.done == PICTURES
    return items, collector, annotated


@pytest.mark.parametrize("calls", [1, predictors.CALLS_AT_ONCE])
def test_calls_in_flight_end_in_input_order(tmp_path, calls):
    model = _Numbered()
    predictor = predictors.Predictor(
        Staged(model.prepare, model.infer), {1: "thing"}, "onnx", "numbered", calls=calls
    )
    items, collector, annotated = _predicted(tmp_path, predictor)

    # Picture n is the n-th image, its size its own, its one detection scored with its number.
    assert [image["file_name"] for image in collector.images] == [item.path for item in items]
    assert [image["height"] for image in collector.images] == [40 + n for n in range(PICTURES)]
    scores = [round(0.5 + n / 100, 5) for n in range(PICTURES)]
    assert [r["score"] for r in collector.results] == scores
    assert [r["image_id"] for r in collector.results] == list(range(1, PICTURES + 1))
    # Never more calls at once than the predictor allows, and that many when it allows two.
    assert model.most == calls
    assert threading.get_ident() not in model.threads
    for item in items:
        with Image.open(f"{annotated}/{item.output}") as drawn:
            assert drawn.size == (60, 40 + int(item.output[1:3]))


def test_two_interpreters_share_the_calls_each_one_call_at_a_time(tmp_path):
    # A TFLite file's predictor: two interpreters, neither ever running two calls at once.
    models = [_Numbered(), _Numbered()]
    staged = predictors.any_free([Staged(m.prepare, m.infer) for m in models])
    predictor = predictors.Predictor(staged, {1: "thing"}, "tflite", "two", calls=len(models))
    _, collector, _ = _predicted(tmp_path, predictor)

    scores = [round(0.5 + n / 100, 5) for n in range(PICTURES)]
    assert [r["score"] for r in collector.results] == scores
    assert [m.most for m in models] == [1, 1]  # each one call at a time, both used
