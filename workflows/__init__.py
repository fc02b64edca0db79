"""Workflows: deterministic, replay-safe; they hold time and transitions, never money.

The list of every workflow type is `workflows.registry.WORKFLOWS`."""
