"""Loading weights with one copy in memory (tts_zoo.lean_load): the reader gives safetensors' exact
tensors without keeping the file mapped, modules built with parameters on meta take them as theirs,
and nothing is left without a value."""

import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tts_zoo.checkpoint import load_state_strict
from tts_zoo.lean_load import check_materialized, parameters_on_meta, read_tensors, refresh_weight_norm


def tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g), "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(), "i64": torch.arange(-3, 9),
        "bool": torch.tensor([True, False, True]), "u8": torch.arange(250, 256, dtype=torch.uint8),
        "scalar": torch.tensor(2.5, dtype=torch.float64), "empty": torch.zeros(0, 4),
    }


def test_read_tensors_equals_safetensors_for_every_dtype_and_reads_only_the_keys_asked(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file(tensors(), str(path), metadata={"format": "x"})
    expected = {k: v.clone() for k, v in load_file(str(path)).items()}  # (safetensors' own map the file)
    got = read_tensors(path, ["bf16", "f32", "bool", "scalar", "empty", "u8", "i64", "f16"])
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape and torch.equal(got[key], value), key
    assert list(read_tensors(path, ["i64"])) == ["i64"]
    if sys.platform.startswith("linux"):  # read, not memory-mapped: nothing of the file stays resident
        assert str(path) not in open("/proc/self/maps").read()
    with pytest.raises(KeyError):
        read_tensors(path, ["nope"])


def test_a_truncated_file_is_an_error_not_garbage(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.ones(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="ends inside a tensor"):
        read_tensors(path, ["w"])


class Net(nn.Module):
    """Parameters (plain, weight-normed, LSTM), a persistent and a non-persistent buffer."""

    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():  # the old-style weight norm of the reference's checkpoints
            warnings.simplefilter("ignore", FutureWarning)
            self.conv = nn.utils.weight_norm(nn.Conv1d(3, 4, 3, padding=1))
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.norm = nn.BatchNorm1d(3)
        self.register_buffer("window", torch.hann_window(3), persistent=False)

    def forward(self, x):  # x [B, 3, T]
        return self.lstm((self.conv(self.norm(x) * self.window[:, None])).transpose(1, 2))[0]


def test_a_module_built_on_meta_takes_the_files_tensors_and_computes_the_same(tmp_path):
    torch.manual_seed(0)
    source = Net()
    source.norm.running_mean.fill_(0.3)  # a persistent buffer that differs from a fresh build
    path = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    with parameters_on_meta():
        net = Net()
    assert all(p.is_meta for p in net.parameters()) and not any(b.is_meta for b in net.buffers())
    assert not nn.Linear(2, 2).weight.is_meta  # the patch ends with the block
    load_state_strict(net, read_tensors(path, list(source.state_dict())), path, assign=True)
    check_materialized(net, path)
    refresh_weight_norm(net)
    assert not net.conv.weight.is_meta and torch.equal(net.conv.weight, source.conv.weight)
    x = torch.randn(2, 3, 6)
    assert torch.equal(net.eval()(x), source.eval()(x))
    assert all(p.requires_grad for p in net.parameters())  # trainable as built


def test_a_tensor_derived_from_a_parameter_on_meta_is_reported():
    class Derived(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))
            self.register_buffer("w_sum", self.w.detach().sum(), persistent=False)

    with parameters_on_meta():
        m = Derived()
    m.load_state_dict({"w": torch.ones(3)}, assign=True)
    with pytest.raises(RuntimeError, match="still without values: w_sum"):
        check_materialized(m, "ckpt")
