"""The SLM adversarial loss (StyleTTS 2's Modules/slmadv.py): differentiable durations, gradients only
where the reference has them, the clip / update / gradient-scaling rules (fixtures README section 8).

The reference draws its choices with numpy, so there is no value parity to test; the model is built
at the fixture's widths with random weights and a tiny random WavLM.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.styletts2.reference import FixtureSet, tiny_wavlm_config

from tts_zoo_styletts2.decoders.hifigan import HiFiGANDecoder
from tts_zoo_styletts2.decoders.istftnet import ISTFTNetDecoder
from tts_zoo_styletts2.diffusion.style_diffusion import StyleDiffusion
from tts_zoo_styletts2.discriminators.wavlm import WavLMDiscriminator
from tts_zoo_styletts2.losses.slm_adversarial import SLMAdversarialLoss, soft_alignment
from tts_zoo_styletts2.plbert import PLBert
from tts_zoo_styletts2.prosody_predictor import ProsodyPredictor
from tts_zoo_styletts2.style_encoder import StyleEncoder
from tts_zoo_styletts2.text_encoder import TextEncoder

SPF = 600  # samples per aligned frame (2 mel frames at hop 300)


def build_model(fs: FixtureSet) -> tuple[nn.Module, WavLMDiscriminator]:
    """A StyleTTS 2 model at the fixture's widths (random weights), modes as in stage 2."""
    mp, o, slm = fs.model_params, fs.overrides, fs.model_params["slm"]
    bert = fs.aux_config("PLBERT_dir")["model_params"]
    torch.manual_seed(0)
    m = nn.Module()
    m.text_encoder = TextEncoder(mp["hidden_dim"], 5, mp["n_layer"], mp["n_token"])
    m.plbert = PLBert(**bert, output_dim=mp["hidden_dim"])
    m.predictor = ProsodyPredictor(mp["style_dim"], mp["hidden_dim"], mp["n_layer"], mp["max_dur"], mp["dropout"])
    m.diffusion = StyleDiffusion(
        style_dim=mp["style_dim"], embedding_features=bert["hidden_size"], multispeaker=mp["multispeaker"],
        **mp["diffusion"]["transformer"],
    )
    dec = {k: v for k, v in mp["decoder"].items() if k != "type"}
    decoder_cls = ISTFTNetDecoder if mp["decoder"]["type"] == "istftnet" else HiFiGANDecoder
    m.decoder = decoder_cls(
        dim_in=mp["hidden_dim"], style_dim=mp["style_dim"], hidden_dim=o["decoder_hidden_dim"],
        asr_res_dim=o["decoder_asr_res_dim"], **dec,
    )
    m.style_encoder = StyleEncoder(dim_in=mp["dim_in"], style_dim=mp["style_dim"], max_conv_dim=mp["hidden_dim"])
    m.predictor_encoder = StyleEncoder(dim_in=mp["dim_in"], style_dim=mp["style_dim"], max_conv_dim=mp["hidden_dim"])
    m.wd = WavLMDiscriminator(
        hidden=slm["hidden"], nlayers=slm["nlayers"], initial_channel=slm["initial_channel"],
        random_init_config=tiny_wavlm_config(slm["hidden"], slm["nlayers"]),
    )
    m.eval()
    for name in ("predictor", "plbert", "wd"):  # train_second.py: predictor, bert, bert_encoder train
        getattr(m, name).train()
    return m, m.wd


def batch(fs: FixtureSet, n: int = 3, tokens: int = 6, mel_frames: int = 40):
    g = torch.Generator().manual_seed(1)
    style = 2 * fs.model_params["style_dim"]
    texts = torch.randint(1, fs.model_params["n_token"], (n, tokens), generator=g)
    lengths = torch.full((n,), tokens)
    lengths[1] = tokens - 1
    s_trg = 0.2 * torch.randn(n, style, generator=g)
    return dict(
        y_rec_gt=0.1 * torch.randn(n, 1, 8 * SPF, generator=g),
        y_rec_gt_pred=0.1 * torch.randn(n, 1, 8 * SPF, generator=g),
        waves=[0.1 * torch.randn(mel_frames * 300, generator=g) for _ in range(n)],
        mel_lengths=torch.full((n,), mel_frames),
        texts=texts,
        text_lengths=lengths,
        s_trg=s_trg,
        ref_s=s_trg if fs.multispeaker else None,
    )


def params_with_grad(module: nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.grad is not None}


def test_soft_alignment_is_differentiable():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, dtype=torch.float64) - 0.3
    length = int(torch.round(torch.sigmoid(logits).sum()))
    assert abs(torch.sigmoid(logits).sum().item() - length) < 0.4  # away from a rounding boundary
    assert torch.autograd.gradcheck(lambda x: soft_alignment(x, 1.5), (logits.requires_grad_(),))


def test_soft_alignment_formula():
    """Gaussian-kernel soft alignment, written out: out[i, j] = Σ_m x[i, m] h[i, m + L - 1 - j]
    (the reference's depthwise conv1d with padding L - 1, first L outputs), softmax over tokens."""
    torch.manual_seed(1)
    x = torch.randn(4, 6, dtype=torch.float64) + 1.0
    sig = 1.5
    attn = soft_alignment(x, sig)
    p = torch.sigmoid(x)
    length = int(torch.round(p.sum()))
    assert attn.shape == (4, length) and length > x.shape[1]
    dur = p.sum(-1)
    centres = torch.cumsum(dur, 0) - dur / 2
    t = torch.arange(length, dtype=x.dtype)
    h = torch.exp(-0.5 * (t[None] - (length - centres[:, None])) ** 2 / sig**2)
    out = torch.zeros(4, length, dtype=x.dtype)
    for i in range(4):
        for j in range(length):
            for m in range(x.shape[1]):
                if 0 <= m + length - 1 - j < length:
                    out[i, j] += x[i, m] * h[i, m + length - 1 - j]
    torch.testing.assert_close(attn, torch.softmax(out, dim=0), rtol=0, atol=1e-12)
    torch.testing.assert_close(attn.sum(0), torch.ones(length, dtype=x.dtype))


def test_gradients_only_where_the_reference_has_them(fixture_set):
    model, wd = build_model(fixture_set)
    loss = SLMAdversarialLoss(min_len=8, max_len=12, batch_percentage=1.0)
    b = batch(fixture_set)
    out = loss(model, wd, loss.skip_update - 1, use_ind=False, generator=torch.Generator().manual_seed(0), **b)
    assert out is not None and out.discriminator_loss is not None
    # min_len/max_len = 8/12 mel frames → clips of 6 aligned frames (predicted lengths are far longer)
    assert out.generated.shape == (3, 1, 6 * SPF) and not out.generated.requires_grad

    out.generator_loss.backward()
    for name, module in model.named_children():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert all(torch.isfinite(g).all() for g in grads), name
    # No gradient: the text encoder runs under no_grad, the style encoders are not used.
    for name in ("text_encoder", "style_encoder", "predictor_encoder"):
        assert not params_with_grad(getattr(model, name)), name
    # PL-BERT (all but ALBERT's unused pooler), the whole predictor (durations through the soft
    # alignment, F0/energy through the clips) and the diffusion model (sampled style).
    plbert = {n for n, _ in model.plbert.named_parameters()}
    assert params_with_grad(model.plbert) == {n for n in plbert if ".pooler." not in n}
    for name in ("predictor", "diffusion", "wd"):
        module = getattr(model, name)
        assert params_with_grad(module) == {n for n, _ in module.named_parameters()}, name
    assert {"encode.conv1.weight_v", "generator.conv_post.weight_v"} <= params_with_grad(model.decoder)

    model.zero_grad(set_to_none=True)
    out.discriminator_loss.backward()  # WavLM states are computed without gradient: only the head learns
    assert params_with_grad(model) == {f"wd.{n}" for n, _ in wd.named_parameters()}


def test_target_style_path_leaves_diffusion_untouched(fixture_set):
    model, wd = build_model(fixture_set)
    loss = SLMAdversarialLoss(min_len=8, max_len=12, batch_percentage=1.0, in_distribution_style_proba=1.0)
    out = loss(model, wd, 0, use_ind=True, **batch(fixture_set))
    assert out.discriminator_loss is None  # (step + 1) % skip_update != 0
    out.generator_loss.backward()
    assert not params_with_grad(model.diffusion)
    assert params_with_grad(model.predictor) == {n for n, _ in model.predictor.named_parameters()}


def test_clip_rules(fixture_set):
    model, wd = build_model(fixture_set)
    b = batch(fixture_set, n=4)
    # batch_percentage 0.5 of 4 items → 2 clips; mel_len = clamp(min(L)/2 - 1, 10/2, 14/2) = 7 frames
    out = SLMAdversarialLoss(min_len=10, max_len=14)(model, wd, 0, use_ind=False, **b)
    assert out.generated.shape == (2, 1, 7 * SPF)
    # real waves no longer than the clip: every item is skipped → no step
    b["mel_lengths"] = torch.full((4,), 14)
    assert SLMAdversarialLoss(min_len=10, max_len=14)(model, wd, 0, use_ind=False, **b) is None


def test_gradient_scaling_rule():
    """Predictor gradient norm above thresh → every gradient / norm; then the duration LSTM and
    projection and the diffusion model × scale (train_second.py)."""
    m = nn.Module()
    m.predictor = nn.Module()
    m.predictor.lstm, m.predictor.duration_proj, m.predictor.shared = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    m.diffusion, m.decoder = nn.Linear(2, 2), nn.Linear(2, 2)
    for p in m.parameters():
        p.grad = torch.full_like(p, 3.0)
    norm = (3.0**2 * sum(p.numel() for p in m.predictor.parameters())) ** 0.5
    loss = SLMAdversarialLoss(thresh=5.0, scale=0.01)
    assert loss.scale_gradients(m) == pytest.approx(norm)
    assert torch.allclose(m.decoder.weight.grad, torch.full((2, 2), 3.0 / norm))
    assert torch.allclose(m.predictor.shared.weight.grad, torch.full((2, 2), 3.0 / norm))
    for module in (m.predictor.lstm, m.predictor.duration_proj, m.diffusion):
        assert torch.allclose(module.weight.grad, torch.full((2, 2), 0.03 / norm))
    for p in m.parameters():
        p.grad = torch.full_like(p, 0.1)  # norm below thresh: only the × scale part
    SLMAdversarialLoss(thresh=5.0, scale=0.01).scale_gradients(m)
    assert torch.allclose(m.decoder.weight.grad, torch.full((2, 2), 0.1))
    assert torch.allclose(m.diffusion.weight.grad, torch.full((2, 2), 0.001))

