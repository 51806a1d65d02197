"""hrmkit: Hierarchical Reasoning Models (HRM) and Tiny Recursive Models (TRM) for reasoning puzzles."""

__version__ = "0.1.0"
