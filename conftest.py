"""Loads the harness's pytest plugin and the experiment fixtures; nothing else."""

pytest_plugins = ["harness.plugin", "fixtures.datasets", "fixtures.models", "fixtures.activations"]
