"""Thread defaults: passive OpenMP waits unless chosen otherwise, a fair share of CPUs per rank."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from feedrank import threads
from feedrank.threads import auto_threads, available_cpus


def test_importing_feedrank_chooses_passive_waits_unless_the_environment_did() -> None:
    code = "import feedrank, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout
        == "PASSIVE\n"
    )
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout
        == "ACTIVE\n"
    )


def test_auto_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_load_average", lambda: 0.0)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert auto_threads(3) == 3  # a configured count wins
    assert auto_threads() == available_cpus()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * available_cpus()))
    assert auto_threads() == 1  # ranks on one machine share its CPUs, at least one thread each
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert auto_threads() == 1  # spinning waits: one thread cannot collapse on a busy box
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(threads, "_load_average", lambda: available_cpus() + 1.0)
    assert auto_threads() == 1  # the machine is already busy


def test_an_explicit_omp_num_threads_is_the_automatic_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_load_average", lambda: 0.0)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert auto_threads() == 1  # asked for one thread, even on an idle machine with more CPUs
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert auto_threads() == 7
    assert auto_threads(3) == 3  # a configured count still wins
    for unusable in ("0", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert auto_threads() == available_cpus()
