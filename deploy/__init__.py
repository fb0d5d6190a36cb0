"""Deployment: the stack file model, the ``novabrain`` CLI, the demo and generated artefacts."""
