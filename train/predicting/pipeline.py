"""train.predict's runner: decoding, the model, and drawing/writing overlap. TF-free.

Up to LOOKAHEAD pictures are decoded and made into the model's input (the predictor's
`prepare`: resize, normalisation) ahead by a thread pool (Pillow releases the GIL while it
decodes); the model runs on its own threads, `predictor.calls` pictures at once (the OD API's
exported signatures, TFLite and ONNX files take a batch of one, and one call leaves cores
idle that a second fills); the calls end in input order, and the annotated pictures are
drawn and encoded behind them by another thread. So a model call rarely waits for a file.
(Held ahead, an ONNX input is the float32 picture: 8 of a 4K photo are ~800 MB.)
scripts/bench_predict.py measures the pictures/s against the bare model on decoded arrays.

A picture that cannot be read is skipped and listed; every other picture is still predicted.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import queue
import sys
import threading
import time

from train.data import images
from train.predicting import outputs

LOOKAHEAD = 8  # pictures decoded ahead of the model, and written behind it
DECODERS = 2


class Progress:
    """A progress line on stderr for long inputs (redrawn on a terminal, else every 10 %)."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled and total >= 20
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.shown = -1

    def tick(self, n: int = 1) -> None:  # noqa: D102
        self.done += n
        if not self.enabled:
            return
        tenth = self.done * 10 // max(self.total, 1)
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        bar = "#" * min(tenth, 10) + "." * (10 - min(tenth, 10))
        line = f"predict [{bar}] {self.done}/{self.total} pictures, {rate:.1f}/s"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.stream)
        if self.tty and self.done >= self.total:
            print(file=self.stream)


def _write(image, found, names, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    data = outputs.encode(outputs.draw(image, found, names), target)
    with open(target, "wb") as f:
        f.write(data)


class _InOrder:
    """Work on a pool, ended in the order it was submitted, at most `running` unfinished.

    `submit(context, fn, *args)` hands fn(*args) to the pool; while more than `running` are
    unfinished it waits for the oldest and hands its result and context to `then` on the
    submitting thread (and raises the first that failed). The model's calls: `running` one
    less than the calls at once, `then` recording the detections, so the results' ids and a
    video's frames keep the input order. The drawing and writing: one thread, LOOKAHEAD
    pictures behind at most, so the model waits only when the writing falls that far behind.
    """

    def __init__(self, pool, running: int, then=None):
        self.pool, self.running, self.then = pool, running, then
        self.pending: collections.deque = collections.deque()

    def submit(self, context: tuple, fn, *args) -> None:  # noqa: D102
        self.pending.append((self.pool.submit(fn, *args), context))
        while len(self.pending) > self.running:
            self._end_oldest()

    def finish(self) -> None:
        """Ends everything still unfinished (and raises the first that failed)."""
        while self.pending:
            self._end_oldest()

    def _end_oldest(self) -> None:
        work, context = self.pending.popleft()
        result = work.result()
        if self.then is not None:
            self.then(result, *context)


def _read(path: str, prepare):
    """(the picture, the model's input made from it): on a decoding thread."""
    image = images.pixels(path)
    return image, prepare(image)


def _found(picture, detections, threshold, collector, path: str, frame: int | None = None):
    """A picture's detections recorded in its pixels; returns outputs.Found."""
    height, width = picture[0].shape[:2]
    found = outputs.in_pixels(detections, width, height, threshold)
    collector.add(path, (width, height), found, frame=frame)
    return found


def run_images(items, predictor, threshold, annotated, collector, skipped, progress) -> int:
    """Predicts each image item; returns how many were predicted (the others are `skipped`)."""
    done = 0
    pending: collections.deque = collections.deque()
    upcoming = iter(items)
    with (
        concurrent.futures.ThreadPoolExecutor(DECODERS) as decoders,
        concurrent.futures.ThreadPoolExecutor(predictor.calls) as models,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        behind = _InOrder(pool, LOOKAHEAD)
        prepare = predictor.detect.prepare

        def read_ahead():
            item = next(upcoming, None)
            if item is not None:
                pending.append((item, decoders.submit(_read, item.path, prepare)))

        def then(detections, picture, item):
            nonlocal done
            found = _found(picture, detections, threshold, collector, item.path)
            target = os.path.join(annotated, item.output)
            behind.submit((), _write, picture[0], found, predictor.names, target)
            done += 1
            progress.tick()

        calls = _InOrder(models, predictor.calls - 1, then)
        for _ in range(LOOKAHEAD):
            read_ahead()
        while pending:
            item, decoded = pending.popleft()
            read_ahead()
            try:
                picture = decoded.result()
            except images.ImageError as e:
                skipped.append((item.path, str(e)))
                progress.tick()
                continue
            calls.submit((picture, item), predictor.detect.infer, picture[1])
        calls.finish()
        behind.finish()
    return done


def run_video(item, predictor, threshold, annotated, collector, skipped, progress) -> int:
    """Predicts every frame of one video into an annotated .mp4; returns the frames done."""
    import cv2

    capture = cv2.VideoCapture(item.path)
    if not capture.isOpened():
        skipped.append((item.path, "cannot be opened as a video"))
        return 0
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames: queue.Queue = queue.Queue(LOOKAHEAD)

    def read() -> None:  # decoding and preparing overlap the model
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    frames.put(None)
                    return
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                frames.put((image, predictor.detect.prepare(image)))
        except Exception as e:  # raised on the thread taking the frames, which would wait
            frames.put(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    target = os.path.join(annotated, item.output)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    video, done = None, 0

    def then(detections, picture, frame):
        found = _found(picture, detections, threshold, collector, item.path, frame=frame)
        behind.submit((), _write_frame, video, picture[0], found, predictor.names)
        progress.tick()

    with (
        concurrent.futures.ThreadPoolExecutor(predictor.calls) as models,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        behind = _InOrder(pool, LOOKAHEAD)
        calls = _InOrder(models, predictor.calls - 1, then)
        while (picture := frames.get()) is not None:
            if isinstance(picture, Exception):
                raise picture
            if video is None:
                height, width = picture[0].shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                video = cv2.VideoWriter(target, fourcc, fps, (width, height))
                if not video.isOpened():  # no MPEG-4 encoder in this OpenCV build
                    raise OSError(f"cannot write {target}: OpenCV has no mp4v encoder here")
            calls.submit((picture, done), predictor.detect.infer, picture[1])
            done += 1
        calls.finish()
        behind.finish()
    reader.join()
    capture.release()
    if video is not None:
        video.release()
    if done == 0:
        skipped.append((item.path, "no frame could be decoded"))
    return done


def _write_frame(video, image, found, names) -> None:
    import cv2
    import numpy as np

    picture = np.asarray(outputs.draw(image, found, names))
    video.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))


def frame_count(path: str) -> int:
    """The frames a video says it has (for the progress line; 0 when it does not say)."""
    import cv2

    capture = cv2.VideoCapture(path)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
    capture.release()
    return max(count, 0)


def run(plan, predictor, progress_stream=None) -> dict:
    """Predicts every input of the plan; writes --out; returns the summary."""
    options = plan.options
    annotated = outputs.prepare_out(options.out)
    collector = outputs.Collector(predictor.names)
    skipped = list(plan.skipped)
    stills = [item for item in plan.items if not item.video]
    videos = [item for item in plan.items if item.video]
    total = len(stills) + sum(frame_count(item.path) for item in videos)
    progress = Progress(total, options.progress, progress_stream)
    start = time.perf_counter()
    args = (predictor, options.threshold, annotated, collector, skipped, progress)
    predicted = run_images(stills, *args) if stills else 0
    per_video = [run_video(item, *args) for item in videos]
    frames = sum(per_video)
    elapsed = time.perf_counter() - start
    pictures = predicted + frames
    return collector.write(
        options.out,
        {
            "model": plan.model.path,
            "kind": plan.model.kind,
            "threshold": options.threshold,
            "images": predicted,
            "videos": sum(1 for n in per_video if n),
            "frames": frames,
            "detections": len(collector.results),
            "seconds": round(elapsed, 3),
            "pictures_per_s": round(pictures / elapsed, 2) if elapsed > 0 else None,
            "annotated": annotated,
            "skipped": [{"path": path, "why": why} for path, why in skipped],
        },
    )
