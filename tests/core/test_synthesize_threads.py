"""The Python API's thread default: ``Synthesizer`` synthesizes on the idle cores (or $OMP_NUM_THREADS, or
its ``threads``) and gives the caller back its own torch thread count between chunks."""

import pytest
import torch
from torch import nn

from tts_zoo import threads
from tts_zoo.synthesize import SynthesisError, Synthesizer

from .test_synthesize import CharFrontend


class ThreadProbe(nn.Module):
    """A one-chunk-per-sentence model that records torch's thread count while it synthesizes."""

    sample_rate = 100
    max_tokens = 16
    token_prefix = (0,)
    style_size = None
    requires_reference = False
    end_trim_samples = 0

    def __init__(self):
        super().__init__()
        self.frontend = CharFrontend()
        self.gain = nn.Parameter(torch.ones(()))
        self.seen = []

    def synthesize(self, tokens, style=None):
        self.seen.append(torch.get_num_threads())
        return torch.ones(4)


@pytest.fixture
def one_thread():
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


def test_synthesis_runs_on_the_given_threads_and_restores_the_callers(one_thread):
    probe = ThreadProbe()
    synth = Synthesizer(probe, threads=2)
    pieces = synth.stream("One. Two.")
    assert torch.get_num_threads() == 1
    first = next(pieces)
    assert torch.get_num_threads() == 1  # between chunks: the caller's count
    rest = list(pieces)
    assert len(first) == 4 and len(rest) == 1 and probe.seen == [2, 2]


def test_default_is_omp_num_threads_else_the_idle_cores(monkeypatch, one_thread):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert Synthesizer(ThreadProbe()).threads == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "_busy_cores", lambda seconds: 2.7)  # a busy machine: 1.3 cores idle
    probe = ThreadProbe()
    synth = Synthesizer(probe)
    synth("hello.")
    assert synth.threads == 1 and probe.seen == [1]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_thread_counts_are_one_clear_error(bad):
    with pytest.raises(SynthesisError, match="threads must be a positive whole number"):
        Synthesizer(ThreadProbe(), threads=bad)
