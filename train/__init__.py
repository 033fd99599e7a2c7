"""tfod-finetune: a fine-tuning driver for the TF2 Object Detection API."""

__version__ = "0.1.0"
