"""Parity of the StyleTTS 2 prosody predictor with the reference (fixtures README sections 5, 6, 9.1)."""

import pytest
import torch

from tests.styletts2.reference import FixtureSet, assert_close
from tts_zoo import interfaces
from tts_zoo_styletts2.prosody_predictor import ProsodyPredictor


def new(fs: FixtureSet) -> ProsodyPredictor:
    mp = fs.model_params
    return ProsodyPredictor(
        style_dim=mp["style_dim"], d_hid=mp["hidden_dim"], nlayers=mp["n_layer"], max_dur=mp["max_dur"],
        dropout=mp["dropout"],
    )


def build(fs: FixtureSet, weights: str = "stage2") -> ProsodyPredictor:
    model = new(fs)
    state = fs.stage2_state("predictor") if weights == "stage2" else fs.stage1_state("predictor")
    model.load_state_dict(state, strict=True)
    return model.eval()


def test_inference_durations_match_reference(fixture_set):
    """README section 6 step 4, including the rounding of the durations."""
    f = fixture_set.fx["infer_fixed"]
    model = build(fixture_set)
    assert isinstance(model, interfaces.DurationModel)
    with torch.inference_mode():
        logits, d = model.predict_durations(f["d_en"], f["s"], f["input_lengths"], f["text_mask"])
    assert_close(d, f["d"], 2e-5, "infer_fixed/d")
    assert_close(logits, f["duration_logits"], 5e-6, "infer_fixed/duration_logits")
    duration = torch.sigmoid(logits).sum(-1)
    assert_close(duration, f["duration"], 1e-4, "infer_fixed/duration")
    pred_dur = torch.round(duration.squeeze(0)).clamp(min=1)
    if not fixture_set.multispeaker:
        pred_dur[-1] += 5  # the LJSpeech notebook lengthens the last token
    assert torch.equal(pred_dur, f["pred_dur_model"])


def test_training_forward_matches_reference(fixture_set):
    b = fixture_set.fx["batch"]
    model = build(fixture_set)
    with torch.inference_mode():
        _, d = model.predict_durations(b["d_en"], b["s_dur"], b["input_lengths"], b["text_mask"])
        logits, en = model(b["d_en"], b["s_dur"], b["input_lengths"], b["alignment"], b["text_mask"])
    assert_close(d, b["predictor_text_encoder_out"], 2e-5, "batch/predictor_text_encoder_out")
    assert_close(logits, b["predictor_duration_logits"], 5e-6, "batch/predictor_duration_logits")
    assert_close(en, b["predictor_en"], 2e-5, "batch/predictor_en")
    # padded tokens carry nothing into the frames
    mask = b["text_mask"]
    assert d[mask].abs().max() == 0


def test_f0_energy_match_reference(fixture_set):
    fx = fixture_set.fx
    model = build(fixture_set)
    with torch.inference_mode():
        f0, n = model.predict_f0_energy(fx["predictor_F0N_in"]["en"], fx["predictor_F0N_in"]["s"])
        f0_b, n_b = model.predict_f0_energy(fx["batch"]["predictor_en"], fx["batch"]["s_dur"])
    assert_close(f0, fx["predictor_F0N_out"][0], 2e-5, "predictor_F0N_out/0")
    assert_close(n, fx["predictor_F0N_out"][1], 2e-5, "predictor_F0N_out/1")
    assert_close(f0_b, fx["batch"]["F0"], 2e-5, "batch/F0")
    assert_close(n_b, fx["batch"]["N"], 2e-5, "batch/N")


def test_stage1_weights_match_reference(fixture_set):
    b, s1 = fixture_set.fx["batch"], fixture_set.fx["stage1_check"]
    model = build(fixture_set, "stage1")
    with torch.inference_mode():
        _, d = model.predict_durations(b["d_en"], b["s_dur"], b["input_lengths"], b["text_mask"])
        f0, n = model.predict_f0_energy(b["predictor_en"], b["s_dur"])
    assert_close(d, s1["predictor_text_encoder"], 2e-5, "stage1_check/predictor_text_encoder")
    assert_close(f0, s1["predictor_F0N"][0], 2e-5, "stage1_check/predictor_F0N/0")
    assert_close(n, s1["predictor_F0N"][1], 2e-5, "stage1_check/predictor_F0N/1")


def test_train_mode_runs_with_gradients(fixture_set):
    """Training path: dropout active, gradients reach the duration encoder."""
    b = fixture_set.fx["batch"]
    model = build(fixture_set).train()
    logits, en = model(b["d_en"], b["s_dur"], b["input_lengths"], b["alignment"], b["text_mask"])
    f0, n = model.predict_f0_energy(en, b["s_dur"])
    (logits.mean() + f0.mean() + n.mean()).backward()
    grad = model.text_encoder.lstms[0].weight_ih_l0.grad
    assert grad is not None and grad.abs().sum() > 0


def test_strict_load_names_missing_and_misshapen_keys(fixture_set):
    state = dict(fixture_set.stage2_state("predictor"))
    del state["F0.1.pool.weight_g"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*F0\.1\.pool\.weight_g"):
        new(fixture_set).load_state_dict(state, strict=True)
    mp = fixture_set.model_params
    other = ProsodyPredictor(style_dim=mp["style_dim"], d_hid=mp["hidden_dim"], nlayers=mp["n_layer"], max_dur=mp["max_dur"] + 1)
    with pytest.raises(RuntimeError, match=r"size mismatch for duration_proj\.linear_layer\.weight"):
        other.load_state_dict(fixture_set.stage2_state("predictor"), strict=True)


def test_duration_prior_starts_the_durations_at_the_data_mean():
    """init_duration_prior: with the head's weights at zero, Σ_k sigmoid(bias_k) = Σ_k P(d > k) = E[d]."""
    torch.manual_seed(0)
    model = ProsodyPredictor(style_dim=8, d_hid=16, nlayers=1, max_dur=12, dropout=0.0).eval()
    durations = torch.tensor([1, 2, 2, 3, 5, 9, 2, 1])
    exceed = (durations.view(-1, 1) > torch.arange(12).view(1, -1)).sum(0)
    model.init_duration_prior(exceed, float(len(durations)))
    with torch.no_grad():
        model.duration_proj.linear_layer.weight.zero_()
    texts, style = torch.randn(1, 16, 5), torch.randn(1, 8)  # [B, C, T]
    with torch.no_grad():
        logits, _ = model.predict_durations(texts, style, torch.tensor([5]), torch.zeros(1, 5, dtype=torch.bool))
    expected = float(durations.float().mean())  # 3.125; the 1e-3 clamp moves each empty bin by at most 1e-3
    assert torch.sigmoid(logits).sum(-1) == pytest.approx(torch.full((1, 5), expected), abs=12e-3)
    # a fresh head instead starts every token at max_dur / 2
    fresh = ProsodyPredictor(style_dim=8, d_hid=16, nlayers=1, max_dur=12, dropout=0.0).eval()
    with torch.no_grad():
        fresh.duration_proj.linear_layer.weight.zero_()
        fresh.duration_proj.linear_layer.bias.zero_()
        logits, _ = fresh.predict_durations(texts, style, torch.tensor([5]), torch.zeros(1, 5, dtype=torch.bool))
    assert torch.sigmoid(logits).sum(-1) == pytest.approx(torch.full((1, 5), 6.0))
