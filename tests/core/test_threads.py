"""Thread counts of the commands: OMP_NUM_THREADS wins; otherwise the idle cores, at least one."""

from __future__ import annotations

import os

from tts_zoo import threads


def test_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads(0.0) == 3


def test_idle_cores_are_used_and_never_fewer_than_one(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "_busy_cores", lambda seconds: 1.2)
    assert threads.default_threads() == 3
    monkeypatch.setattr(threads, "_busy_cores", lambda seconds: 7.5)  # overloaded
    assert threads.default_threads() == 1
    monkeypatch.setattr(threads, "_busy_cores", lambda seconds: 0.0)
    assert threads.default_threads() == 4


def test_busy_cores_measured_from_proc_stat_is_within_the_machine():
    busy = threads._busy_cores(0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 1e-6


def test_configure_sets_the_variables_for_torch(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_busy_cores", lambda seconds: 0.0)
    n = threads.configure_threads()
    assert os.environ["OMP_NUM_THREADS"] == str(n) == os.environ["MKL_NUM_THREADS"]
    import torch

    assert torch.get_num_threads() == n
    torch.set_num_threads(1)  # the rest of the suite runs single-threaded
