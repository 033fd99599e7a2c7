"""Install the tfod-finetune driver (package `train`).

The TensorFlow / OD API stack is deliberately not in install_requires: the OD API sdist and
tf-models-official declare plain `tensorflow` and other heavy deps that would pull a second TF
next to `tensorflow-cpu`. Stacks are pinned as lock files in constraints/ and installed by
scripts/setup_env.sh (what `make test`, `make demo`, CI and the Dockerfile run).
"""

from setuptools import find_packages, setup

setup(
    name="tfod-finetune",
    version="0.1.0",
    description="Drop-in fine-tuning driver for the TF2 Object Detection API",
    # configs/ (the demo's embedded zoo config) ships inside the package as train/configs, so
    # a non-editable `pip install .` runs `python -m train.demo` too.
    packages=[*find_packages(include=["train", "train.*"]), "train.configs"],
    package_dir={"train.configs": "configs"},
    package_data={"train.configs": ["*.config"]},
    python_requires=">=3.11,<3.12",
    install_requires=["absl-py"],
    entry_points={"console_scripts": ["tfod-finetune=train.finetune:run"]},
)
