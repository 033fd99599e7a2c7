"""Launching training: a pure plan (argv, env, cadence) and a small runner that executes it."""
