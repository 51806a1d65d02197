"""Upper bounds on user-given sizes, checked before any work starts (a typo must not start a run for days)."""

from __future__ import annotations

# ACT segments one evaluation or prediction may run per puzzle (`--segments`, `Model.predict(segments=)`):
# TRM users evaluate at up to a few hundred; beyond that a typo is likelier than intent.
MAX_SEGMENTS = 512
