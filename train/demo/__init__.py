"""The embedded demo: generated data and a stand-in zoo checkpoint, then a real fine-tune."""
