"""train.predict: plan (TF-free checks), pipeline (decode, model, draw overlapped), outputs."""
