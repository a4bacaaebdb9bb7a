"""Workflow definitions (data) and the local engine that runs them."""

from .definition import load_definition, ordered_stages
from .engine import WorkflowEngine

__all__ = ["load_definition", "ordered_stages", "WorkflowEngine"]
