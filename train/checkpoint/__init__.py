"""Finding and reading fine-tune checkpoints (names and shapes only; no model build)."""
