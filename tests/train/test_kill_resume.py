"""kill -9 in the middle of training, then resume: the same weights and logged curves as a run
that was never interrupted.

The child process trains the toy task and, after optimizer step 5 (checkpoint at step 3, records
every 2 steps), announces it and waits; the test sends SIGKILL, so nothing the process might do
on exit runs. No wall-clock limit: the test waits for the announcement or the child's death.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch import Tensor

from feedrank.train import TensorBatchSource, train
from tests.train.conftest import fast_config
from tests.train.toy import assert_weights_close, make_data, make_evaluate, make_task, weights

ROOT = Path(__file__).resolve().parents[2]
CONFIG = fast_config(epochs=2, grad_accum_steps=2, checkpoint_every=3, eval_every=4, log_every=2)

CHILD = """
import sys, time
from pathlib import Path
from feedrank.train import TensorBatchSource, train
from tests.train.test_kill_resume import CONFIG
from tests.train.toy import make_data, make_evaluate, make_task

run_dir, marker = Path(sys.argv[1]), Path(sys.argv[2])

def on_step(info):
    if info.step == 5:
        marker.write_text("step 5")
        while True:
            time.sleep(1)

task = make_task(seed=0, dropout=0.3)
source = TensorBatchSource(make_data(384, seed=0), batch_size=32, seed=7)
train(task, source, CONFIG, run_dir, evaluate=make_evaluate(make_data(256, seed=1)), on_step=on_step)
"""


def run_in_process(run_dir: Path, *, init_seed: int, resume: bool) -> dict[str, Tensor]:
    task = make_task(seed=init_seed, dropout=0.3)
    source = TensorBatchSource(make_data(384, seed=0), batch_size=32, seed=7)
    train(task, source, CONFIG, run_dir, evaluate=make_evaluate(make_data(256, seed=1)), resume=resume)
    return weights(task.model)


def records(run_dir: Path) -> list[tuple[int, str, str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["split"], r["name"], r["value"]) for r in map(json.loads, lines)]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_weights_and_curves(tmp_path: Path) -> None:
    straight = run_in_process(tmp_path / "straight", init_seed=0, resume=False)

    marker = tmp_path / "at-step-5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "killed"), str(marker)], cwd=ROOT, env=env
    )
    try:
        while not marker.exists():
            assert child.poll() is None, f"the training child exited early with {child.returncode}"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert [p.name for p in (tmp_path / "killed" / "checkpoints").glob("step_*.pt")] == ["step_00000003.pt"]

    resumed = run_in_process(tmp_path / "killed", init_seed=123, resume=True)
    assert_weights_close(straight, resumed, atol=1e-6, rtol=1e-6)
    assert records(tmp_path / "killed") == records(tmp_path / "straight")
