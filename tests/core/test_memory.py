"""tts_zoo.memory: freed blocks stay in the process and are reused without new page faults."""

import subprocess
import sys

import pytest

# Like a training step: 8 blocks of 40 MiB live at once (filled), then all freed; 30 rounds. Prints the
# minor page faults of the last 20 rounds.
PROBE = """
import resource, sys, torch
if sys.argv[1] == "reuse":
    from tts_zoo.memory import reuse_freed_memory
    assert reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(30):
    if i == 10:
        start = faults()
    blocks = [torch.empty(10 * 2**20).fill_(1.0) for _ in range(8)]
    del blocks
print(faults() - start)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_freed_blocks_are_reused_without_page_faults():
    pages = 8 * 40 * 2**20 // 4096  # one round's pages, when they are fresh from the kernel
    default, reused = page_faults("default"), page_faults("reuse")
    assert default > 10 * pages // 2, f"glibc kept every freed block (blocks over 32 MiB are normally mapped afresh) ({default} faults): the probe tests nothing"
    assert reused < pages // 10, f"{reused} page faults in 20 rounds of 8 reused 40 MiB blocks"


def test_reuse_is_a_no_op_without_glibc(monkeypatch):
    from tts_zoo import memory

    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.reuse_freed_memory() is False
