"""Text aligner (ASRCNN), monotonic alignment search and the stage-1 aligner losses vs the reference
fixtures (README sections 4, 5, 7, 8; tolerances of section 9.1)."""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.styletts2.reference import FixtureSet, assert_close
from tts_zoo.errors import CheckpointError
from tts_zoo.interfaces import Aligner
from tts_zoo_styletts2.aligner.asr_cnn import ASRCNN, _dct_matrix
from tts_zoo_styletts2.aligner.monotonic import mask_from_lens, maximum_path, monotonic_alignment
from tts_zoo_styletts2.losses.aligner import AlignerMonoLoss, AlignerS2SLoss


def build(fs: FixtureSet, state: dict | None = None) -> ASRCNN:
    model = ASRCNN(**fs.aux_config("ASR_config")["model_params"]).eval()
    model.load_state_dict(fs.stage2_state("text_aligner") if state is None else state)
    return model


def run_aligner(fs: FixtureSet, model: ASRCNN):
    ta = fs.fx["text_aligner"]
    torch.manual_seed(ta["seed"])  # the forward draws the 10 % unk-token mask (README 7)
    with torch.no_grad():
        return model(ta["mels"], ta["mask"], ta["texts"])


def test_forward_parity(fixture_set: FixtureSet):
    ta = fixture_set.fx["text_aligner"]
    out = run_aligner(fixture_set, build(fixture_set))
    assert_close(out.ctc_logits, ta["ppgs"], 5e-5, "ppgs")
    assert_close(out.s2s_logits, ta["s2s_pred"], 1e-5, "s2s_pred")
    assert_close(out.attention, ta["s2s_attn"], 1e-5, "s2s_attn")
    # Padded frames get no attention; every step's attention sums to 1.
    assert (out.attention[ta["mask"].unsqueeze(1).expand_as(out.attention)] == 0).all()
    assert_close(out.attention.sum(-1), torch.ones(out.attention.shape[:2]), 1e-5, "attention rows")


def test_token_mask_draws_once_from_global_generator(fixture_set: FixtureSet):
    """One rand(B, T) < 0.1 per call, also in eval: the RNG stream after the call is the
    reference's, and the drawn mask is the stored one."""
    ta = fixture_set.fx["text_aligner"]
    torch.manual_seed(ta["seed"])
    assert torch.equal(torch.rand(ta["texts"].shape) < 0.1, ta["random_token_mask"])
    expected_next = torch.rand(3)
    run_aligner(fixture_set, build(fixture_set))
    assert torch.equal(torch.rand(3), expected_next)


def test_token_mask_changes_the_decoder_input(fixture_set: FixtureSet):
    model = build(fixture_set)
    model.asr_s2s.token_mask_prob = 0.0
    clean = run_aligner(fixture_set, model)
    model.asr_s2s.token_mask_prob = 1.0  # every token becomes unk
    masked = run_aligner(fixture_set, model)
    assert torch.equal(masked.ctc_logits, clean.ctc_logits)  # the CTC head never sees the text
    assert (masked.s2s_logits - clean.s2s_logits).abs().max() > 1e-3


def test_post_processing_and_losses(fixture_set: FixtureSet):
    ta = fixture_set.fx["text_aligner"]
    out = run_aligner(fixture_set, build(fixture_set))
    frames = ta["mel_input_length"] // 2 ** ASRCNN.n_down

    stage2 = monotonic_alignment(out.attention, ta["input_lengths"], frames)
    assert torch.equal(stage2.attention, out.attention[:, 1:])
    assert torch.equal(stage2.mask, ta["mask_ST"])
    assert torch.equal(stage2.path, ta["s2s_attn_mono_stage2"])
    assert torch.equal(stage2.durations, ta["d_gt"])
    assert torch.equal(stage2.durations.sum(-1).long(), frames)  # every frame maps to one token

    stage1 = monotonic_alignment(out.attention, ta["input_lengths"], frames, zero_padding=True)
    assert torch.equal(stage1.mask == 0, ta["attn_mask_stage1"])
    assert_close(stage1.attention, ta["s2s_attn_stage1"], 1e-5, "s2s_attn_stage1")
    assert (stage1.attention[ta["attn_mask_stage1"]] == 0).all()
    assert torch.equal(stage1.path, ta["s2s_attn_mono_stage1"])

    loss_s2s = AlignerS2SLoss()(out.s2s_logits, ta["texts"], ta["input_lengths"])
    loss_mono = AlignerMonoLoss()(stage1.attention, stage1.path)
    assert_close(loss_s2s, ta["loss_s2s"], 1e-5, "loss_s2s")
    assert_close(loss_mono, ta["loss_mono"], 1e-5, "loss_mono")


def test_losses_backpropagate_into_the_aligner(fixture_set: FixtureSet):
    ta = fixture_set.fx["text_aligner"]
    model = build(fixture_set)  # eval: no dropout, so the numbers are the fixture's
    torch.manual_seed(ta["seed"])
    out = model(ta["mels"], ta["mask"], ta["texts"])
    stage1 = monotonic_alignment(out.attention, ta["input_lengths"], ta["mel_input_length"] // 2, zero_padding=True)
    loss = AlignerS2SLoss()(out.s2s_logits, ta["texts"], ta["input_lengths"]) + AlignerMonoLoss()(
        stage1.attention, stage1.path
    )
    loss.backward()
    assert_close(loss.detach(), ta["loss_s2s"] + ta["loss_mono"], 2e-5, "loss sum")
    grads = {k: p.grad for k, p in model.named_parameters() if not k.startswith("ctc_linear.")}  # CTC head: unused
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert model.asr_s2s.attention_layer.location_layer.location_conv.conv.weight.grad.abs().sum() > 0
    assert model.to_mfcc.dct_mat.grad is None  # a buffer, not a parameter


def test_get_feature_parity(fixture_set: FixtureSet):
    fx = fixture_set.fx
    model = build(fixture_set)
    with torch.inference_mode():
        assert_close(model.get_feature(fx["text_aligner"]["mels"]), fx["text_aligner"]["get_feature_out"], 1e-4, "get_feature")
        assert_close(model.get_feature(fx["ref_mel"]), fx["text_aligner_get_feature_out"], 1e-4, "get_feature(ref_mel)")
        # [B, 1, n_mels, F] as the training loops pass it
        assert_close(model.get_feature(fx["ref_mel"].unsqueeze(1)), fx["text_aligner_get_feature_out"], 1e-4, "4-D")


def test_stage1_weights(fixture_set: FixtureSet):
    fx = fixture_set.fx
    model = build(fixture_set, fixture_set.stage1_state("text_aligner"))
    with torch.no_grad():
        out = model.get_feature(fx["text_aligner"]["mels"])
    assert_close(out, fx["stage1_check"]["text_aligner_get_feature"], 1e-4, "stage1_check/text_aligner_get_feature")


def test_dct_buffer(fixture_set: FixtureSet):
    dct = fixture_set.fx["audio"]["dct_40_80_ortho"]
    assert_close(_dct_matrix(dct.shape[1], dct.shape[0]), dct, 2e-5, "create_dct(40, 80, ortho)")
    assert torch.equal(fixture_set.stage2_state("text_aligner")["to_mfcc.dct_mat"], dct)


def test_official_loader(fixture_set: FixtureSet, tmp_path):
    fs = fixture_set
    cfg, ckpt = fs.path(fs.config["ASR_config"]), fs.path(fs.config["ASR_path"])
    aux = torch.load(ckpt, weights_only=True)["model"]
    stage2 = fs.stage2_state("text_aligner")
    assert aux.keys() == stage2.keys() and all(torch.equal(aux[k], stage2[k]) for k in aux)

    model = ASRCNN.from_official(cfg, ckpt)
    assert isinstance(model, Aligner) and not model.training
    assert all(torch.equal(v, aux[k]) for k, v in model.state_dict().items())
    ta = fs.fx["text_aligner"]
    assert_close(run_aligner(fs, model).attention, ta["s2s_attn"], 1e-5, "s2s_attn (aux file)")

    with pytest.raises(CheckpointError, match=r"Utils/ASR.*yl4579/StyleTTS2"):
        ASRCNN.from_official(cfg, tmp_path / "Utils" / "ASR" / "epoch_00080.pth")

    broken = dict(aux)
    del broken["asr_s2s.embedding.weight"]
    broken["ctc_linear.2.linear_layer.bias"] = torch.zeros(3)
    torch.save({"model": broken}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        ASRCNN.from_official(cfg, tmp_path / "broken.pth")
    assert "asr_s2s.embedding.weight" in str(err.value) and "ctc_linear.2.linear_layer.bias" in str(err.value)


# ----------------------------------------------------------------------------- monotonic alignment


def test_maximum_path_parity(fixture_set: FixtureSet):
    mp = fixture_set.fx["maximum_path"]
    mask = mask_from_lens(mp["values"], mp["text_lengths"], mp["mel_lengths"])
    assert torch.equal(mask, mp["mask"])
    path = maximum_path(mp["values"], mask)
    assert path.dtype == mp["values"].dtype and torch.equal(path, mp["path"])


def _brute_force(values: torch.Tensor) -> float:
    """Best score over every monotonic path of a [t_x, t_y] matrix (the frames where the token advances)."""
    t_x, t_y = values.shape
    best = -float("inf")
    for steps in itertools.combinations(range(1, t_y), t_x - 1):
        token = torch.zeros(t_y, dtype=torch.long)
        for s in steps:
            token[s:] += 1
        best = max(best, values[token, torch.arange(t_y)].sum().item())
    return best


def test_maximum_path_is_the_best_monotonic_path():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(6, 5, 9, generator=g)
    text_lengths = torch.tensor([5, 4, 1, 3, 5, 2])
    frame_lengths = torch.tensor([9, 7, 4, 3, 5, 9])
    path = maximum_path(values, mask_from_lens(values, text_lengths, frame_lengths))
    for b, (t_x, t_y) in enumerate(zip(text_lengths.tolist(), frame_lengths.tolist())):
        p = path[b]
        assert p.sum() == t_y and (p[:, t_y:] == 0).all() and (p[t_x:] == 0).all()
        token = p[:t_x, :t_y].argmax(0)
        assert token[0] == 0 and token[-1] == t_x - 1 and set(token.diff().tolist()) <= {0, 1}
        score = values[b, token, torch.arange(t_y)].sum().item()
        assert score == pytest.approx(_brute_force(values[b, :t_x, :t_y]), abs=1e-5)


def test_maximum_path_tie_rule():
    """On ties the backtrack stays on the current token: equal scores give the last token every
    frame it can take."""
    values = torch.zeros(1, 4, 7)
    path = maximum_path(values, torch.ones_like(values))
    assert path.sum(-1).tolist() == [[1, 1, 1, 4]]


def test_post_processing_under_inference_mode(fixture_set: FixtureSet):
    ta = fixture_set.fx["text_aligner"]
    model = build(fixture_set)
    torch.manual_seed(ta["seed"])
    with torch.inference_mode():
        out = model(ta["mels"], ta["mask"], ta["texts"])
        aligned = monotonic_alignment(out.attention, ta["input_lengths"], ta["mel_input_length"] // 2)
    assert torch.equal(aligned.durations, ta["d_gt"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(fixture_set: FixtureSet):
    ta = fixture_set.fx["text_aligner"]
    model = build(fixture_set).cuda()
    torch.manual_seed(ta["seed"])
    with torch.inference_mode():
        out = model(ta["mels"].cuda(), ta["mask"].cuda(), ta["texts"].cuda())
        aligned = monotonic_alignment(out.attention, ta["input_lengths"].cuda(), ta["mel_input_length"].cuda() // 2)
    assert out.attention.is_cuda and aligned.path.is_cuda
    assert_close(out.attention, ta["s2s_attn"], 1e-4, "s2s_attn (cuda)")
    assert torch.equal(aligned.durations.cpu(), ta["d_gt"])
