# tfod-finetune on GPUs: the primary stack (TF 2.15.1) over the official TensorFlow GPU image.
#
#   docker build -t tfod-finetune .
#   docker run --gpus all --init --rm --user "$(id -u):$(id -g)" \
#     -v "$PWD/data:/data:ro" -v "$PWD/zoo:/checkpoints:ro" -v "$PWD/runs:/runs" \
#     tfod-finetune --pipeline_config=/data/pipeline.config --model_dir=/runs/run1 \
#       --checkpoint=/checkpoints/ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8
#
# Volumes (docs/slurm-docker.md): /data TFRecords, label map and config (read-only), /checkpoints
# zoo checkpoints (read-only), /runs model dirs (checkpoints, logs, TensorBoard events).
FROM tensorflow/tensorflow:2.15.1-gpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/tfod-finetune

# The dependencies first, in a layer of their own: a change to the code rebuilds only the
# layers after it. The same lock files and installer as CI (scripts/setup_env.sh), TensorFlow
# from the image; the package is installed editable over a placeholder until its code comes.
COPY setup.py pyproject.toml ./
COPY constraints/ constraints/
COPY scripts/setup_env.sh scripts/
COPY configs/ configs/
RUN mkdir train && touch train/__init__.py \
    && PYTHON=python3 bash scripts/setup_env.sh tf215-image /opt/venv \
    && useradd --create-home --uid 1000 --shell /bin/bash tfod \
    && mkdir -p /data /checkpoints /runs \
    && chown tfod:tfod /runs

# The project itself.
COPY README.md ./
COPY scripts/ scripts/
COPY train/ train/
RUN python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .

USER 1000:1000
VOLUME ["/runs"]
ENTRYPOINT ["python", "-m", "train.finetune"]
CMD ["--helpshort"]
