"""hrmkit: Hierarchical Reasoning Models (HRM) and Tiny Recursive Models (TRM) for reasoning puzzles.

`hrmkit.load(path)` returns a `Model` ready for inference (see `hrmkit.deploy.api`); it is imported on first
use, so `import hrmkit` stays cheap and does not load torch.
"""

__version__ = "0.1.0"

_API = ("load", "Model", "Prediction")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from hrmkit.deploy import api

        return getattr(api, name)
    raise AttributeError(f"module 'hrmkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
