"""JDCNet pitch extractor vs the reference fixtures (README sections 2.1, 3, 5; tolerances of 9.1)."""

from __future__ import annotations

import pytest
import torch

from tests.styletts2.reference import FIXTURES, FixtureSet, assert_close
from tts_zoo.errors import CheckpointError
from tts_zoo.interfaces import PitchExtractor
from tts_zoo_styletts2.pitch.jdc import JDCNet

OFFICIAL = FIXTURES / "jdc_official"


def channels(fs: FixtureSet) -> dict:
    ch = fs.overrides.get("jdc_channels")
    return {"channels": ch} if ch else {}


def build(fs: FixtureSet, state: dict | None = None) -> JDCNet:
    model = JDCNet(**channels(fs)).eval()
    model.load_state_dict(fs.stage2_state("pitch_extractor") if state is None else state)
    return model


def test_forward_parity(fixture_set: FixtureSet):
    fx = fixture_set.fx
    model = build(fixture_set)
    expected = fx["pitch_extractor_out"]
    with torch.inference_mode():
        f0, gan_feature, pooled = model(fx["pitch_extractor_in"].unsqueeze(1))
    assert f0.shape == (1, fx["pitch_extractor_in"].shape[-1])  # [B, F]; the reference squeezes B = 1 away
    assert_close(f0[0], expected["F0"], 5e-6, "F0")
    assert_close(gan_feature, expected["GAN_feature"], 1e-5, "GAN_feature")
    assert_close(pooled, expected["poolblock_out"], 1e-5, "poolblock_out")
    assert (f0 >= 0).all()


def test_batch_parity(fixture_set: FixtureSet):
    batch = fixture_set.fx["pitch_extractor_batch"]
    with torch.no_grad():
        f0, _, _ = build(fixture_set)(batch["in"].unsqueeze(1))
    assert_close(f0, batch["F0"], 5e-6, "pitch_extractor_batch/F0")


def test_stage1_weights(fixture_set: FixtureSet):
    fx = fixture_set.fx
    model = build(fixture_set, fixture_set.stage1_state("pitch_extractor"))
    with torch.no_grad():
        f0, _, _ = model(fx["pitch_extractor_in"].unsqueeze(1))
    assert_close(f0[0], fx["stage1_check"]["pitch_extractor_F0"], 5e-6, "stage1_check/pitch_extractor_F0")


def test_train_mode_matches_eval_except_batch_norm(fixture_set: FixtureSet):
    """The pool-block dropout is never applied (as in the reference): with BatchNorm frozen the
    train-mode output equals the eval one."""
    model = build(fixture_set).train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        f0, _, _ = model(fixture_set.fx["pitch_extractor_in"].unsqueeze(1))
    assert_close(f0[0], fixture_set.fx["pitch_extractor_out"]["F0"], 5e-6, "F0 (train mode)")


def test_official_loader(fixture_set: FixtureSet, tmp_path):
    fs = fixture_set
    path = fs.path(fs.config["F0_path"])
    aux = torch.load(path, weights_only=True)["net"]
    stage2 = fs.stage2_state("pitch_extractor")
    assert aux.keys() == stage2.keys() and all(torch.equal(aux[k], stage2[k]) for k in aux)

    model = JDCNet.from_official(path, **channels(fs))
    assert isinstance(model, PitchExtractor) and not model.training
    assert all(torch.equal(v, aux[k]) for k, v in model.state_dict().items())

    with pytest.raises(CheckpointError, match=r"Utils/JDC/bst\.t7.*yl4579/StyleTTS2"):
        JDCNet.from_official(tmp_path / "Utils" / "JDC" / "bst.t7")
    # Official widths against the tiny file: every conv/BN/LSTM key is named with both shapes.
    with pytest.raises(CheckpointError, match=r"shape mismatch: conv_block\.0\.weight \(file \[") as err:
        JDCNet.from_official(path)
    assert "bilstm_classifier.weight_ih_l0" in str(err.value)

    broken = dict(aux)
    del broken["classifier.bias"]
    broken["extra.weight"] = torch.zeros(1)
    torch.save({"net": broken}, tmp_path / "bst.t7")
    with pytest.raises(CheckpointError, match=r"missing keys: classifier\.bias; unexpected keys: extra\.weight"):
        JDCNet.from_official(tmp_path / "bst.t7", **channels(fs))


@pytest.mark.skipif(not (OFFICIAL / "bst.t7").exists(), reason=f"no {OFFICIAL}")
def test_official_widths():
    """The unmodified full-size JDC (num_class 1, channels 64/128/192/256: LSTM input = the
    reference's literal 512) on the official-format file."""
    model = JDCNet.from_official(OFFICIAL / "bst.t7")
    assert model.bilstm_classifier.input_size == 512
    fx = torch.load(OFFICIAL / "fixtures.pt", weights_only=True)
    torch.set_num_threads(1)

    def sums(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(), x.abs().sum()])

    with torch.inference_mode():
        f0, gan_feature, pooled = model(fx["in_b1"].unsqueeze(1))
        b1 = fx["out_b1"]
        assert_close(f0[0], b1["F0"], 5e-6, "F0_b1")
        assert_close(gan_feature[..., :8], b1["GAN_feature"], 1e-5, "GAN_feature_b1")
        assert_close(pooled, b1["poolblock_out"], 1e-5, "poolblock_out_b1")
        assert_close(sums(gan_feature), b1["GAN_feature_sum_abssum"], 1e-5 * b1["GAN_feature_sum_abssum"].abs().max(), "sums")

        f0, gan_feature, pooled = model(fx["in_b2"].unsqueeze(1))
        b2 = fx["out_b2"]
        assert_close(f0, b2["F0"], 5e-6, "F0_b2")
        assert_close(sums(gan_feature), b2["GAN_feature_sum_abssum"], 1e-5 * b2["GAN_feature_sum_abssum"].abs().max(), "sums")
        assert_close(sums(pooled), b2["poolblock_out_sum_abssum"], 1e-5 * b2["poolblock_out_sum_abssum"].abs().max(), "sums")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(fixture_set: FixtureSet):
    fx = fixture_set.fx
    model = build(fixture_set).cuda()
    with torch.inference_mode():
        f0, _, _ = model(fx["pitch_extractor_batch"]["in"].unsqueeze(1).cuda())
    assert f0.is_cuda
    assert_close(f0, fx["pitch_extractor_batch"]["F0"], 1e-4, "F0 (cuda)")
