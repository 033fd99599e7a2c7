"""Everything that imports TensorFlow or the OD API's model code lives here.

These modules run in the child processes the driver starts (training, the restore dry run /
transplant, the evaluation) and in the demo's data and stand-in builders; the driver process
itself never imports them before training, so its preflight answers in well under a second
and leaves the GPU and the TensorFlow runtime to the training process. A test enforces it
(tests/test_layout.py).
"""
