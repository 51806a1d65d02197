"""Start-up of ARC training at adaptation scale (BENCHMARKS.md, `hrm adapt`): 120 tasks x 1001 versions (identity
+ 1000), 3-5 demonstration pairs each; TrainSampler construction + the run's step plan (max_steps 2000) + the
first batch, on a synthetic split of that shape (no data on disk).

    python examples/bench_sampler_startup.py new|PATH_TO_AN_OLDER_sampler.py EPOCHS_PER_ITER

(an older sampler: `git show a3ab7e7:src/hrmkit/data/sampler.py > /tmp/old_sampler.py`)
"""
import importlib.util, sys, time
from pathlib import Path
from types import SimpleNamespace
import numpy as np
from hrmkit.data.format import DatasetMetadata

which = sys.argv[1]
if which != "new":
    spec = importlib.util.spec_from_file_location("old_sampler", which)
    smp = importlib.util.module_from_spec(spec); spec.loader.exec_module(smp)
else:
    import hrmkit.data.sampler as smp
from hrmkit.train.lr_schedule import reference_step_plan

E = int(sys.argv[2])  # epochs per iteration (eval_interval; the whole run when there is none)
rng = np.random.default_rng(0)
sizes = rng.integers(3, 6, 120 * 1001)
pi = np.concatenate([[0], np.cumsum(sizes)])
N = int(pi[-1])
arrs = SimpleNamespace(inputs=np.broadcast_to(np.zeros(900, np.uint8), (N, 900)), labels=np.broadcast_to(np.zeros(900, np.uint8), (N, 900)),
                       puzzle_identifiers=np.arange(1, 120 * 1001 + 1), puzzle_indices=pi, group_indices=np.arange(121) * 1001)
meta = SimpleNamespace(ignore_label_id=0, pad_id=0, seq_len=900, blank_identifier_id=0)
split = SimpleNamespace(sets={"all": arrs}, metadata=meta, num_groups=120, path=Path("x"))
t0 = time.perf_counter()
s = smp.TrainSampler(split, 768, seed=0, epochs_per_iter=E)
plan = reference_step_plan(s, epochs=100000, eval_interval=E if E < 100000 else None, total_groups=120,
                           mean_puzzle_examples=float(sizes.mean()), max_steps=2000)
t1 = time.perf_counter()
next(iter(s))
t2 = time.perf_counter()
print(f"{which} epochs_per_iter={E}: sampler + step plan {t1 - t0:.2f}s, first batch {t2 - t1:.2f}s, run_steps {plan.run_steps}")
