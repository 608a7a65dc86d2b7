"""The assembled StyleTTS 2 model: built by the registry from a reference config.yml, loaded from the
reference's checkpoints strictly, and matching the notebook inference end to end (README section 6)."""

import pytest
import torch

from tts_zoo import registry
from tts_zoo.errors import CheckpointError
from tts_zoo_styletts2 import official
from tests.styletts2.reference import FIXTURES, assert_close, tiny_wavlm_config


def build(fs, **block_overrides):
    slm = fs.model_params["slm"]
    block = official.model_block(FIXTURES / f"{fs.name}.yml", root=FIXTURES,
                                 slm_random_init=tiny_wavlm_config(slm["hidden"], slm["nlayers"]))
    block.update(block_overrides)
    torch.manual_seed(123)  # random init, then overwritten by the checkpoint
    return registry.build_component(block, "model").eval()


@pytest.fixture
def loaded(fixture_set):
    model = build(fixture_set)
    report = official.load_reference_checkpoint(model, FIXTURES / fixture_set.name / "epoch_2nd_00003.pth", fixture_set.config)
    return fixture_set, model, report


def test_stage2_checkpoint_loads_every_module_strictly(loaded):
    _, _, report = loaded
    assert report == {name: "loaded" for name in official.MODULE_MAP}


def test_stage1_checkpoint_loads_and_gives_its_own_weights(fixture_set):
    model = build(fixture_set)
    report = official.load_reference_checkpoint(model, FIXTURES / fixture_set.name / "first_stage.pth", fixture_set.config)
    assert set(report.values()) == {"loaded"}
    fx = fixture_set.fx
    with torch.no_grad():
        style = model.style_encoder(fx["ref_mel"].unsqueeze(1))
    assert_close(style, fx["stage1_check"]["style_encoder"], 1e-6, "stage-1 style encoder")


def test_a_mismatched_model_fails_naming_the_module_and_keys(fixture_set):
    mp = fixture_set.model_params
    block = {"component": "prosody_predictor", "style_dim": mp["style_dim"], "d_hid": mp["hidden_dim"],
             "nlayers": mp["n_layer"] + 1, "max_dur": mp["max_dur"]}
    model = build(fixture_set, predictor=block)
    with pytest.raises(CheckpointError) as e:
        official.load_reference_checkpoint(model, FIXTURES / fixture_set.name / "epoch_2nd_00003.pth")
    message = str(e.value)
    assert "module 'predictor'" in message and "unexpected keys" not in message.split("predictor")[0]
    assert "missing keys: text_encoder.lstms." in message


def test_missing_or_foreign_checkpoint_files_fail_clearly(fixture_set, tmp_path):
    model = build(fixture_set)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        official.load_reference_checkpoint(model, tmp_path / "nope.pth")
    torch.save({"model": {}}, tmp_path / "asr.pth")
    with pytest.raises(CheckpointError, match="expected a reference checkpoint with a 'net' entry"):
        official.load_reference_checkpoint(model, tmp_path / "asr.pth")


@torch.inference_mode()
def test_notebook_inference_matches_the_reference_step_by_step(loaded):
    fs, model, _ = loaded
    fx, inf, seeds = fs.fx, fs.fx["infer_fixed"], fs.fx["meta"]["seeds"]
    ref_s = model.compute_style(fx["ref_mel"])
    assert_close(ref_s, fx["ref_s"], 1e-6, "ref_s")

    tokens = inf["tokens"]
    t_en, bert_dur, d_en, mask = model.encode_text(tokens)
    assert torch.equal(mask, inf["text_mask"])
    assert_close(t_en, inf["t_en"], 5e-6, "t_en")
    assert_close(bert_dur, inf["bert_dur"], 2e-5, "bert_dur")
    assert_close(d_en, inf["d_en"], 1e-5, "d_en")

    torch.manual_seed(seeds["sampler"])
    noise = torch.randn(1, 2 * model.style_dim).unsqueeze(1)
    assert_close(noise, inf["noise"], 0, "noise")
    s_pred = model.sample_style(bert_dur, ref_s if fs.multispeaker else None, num_steps=5, embedding_scale=1.0, noise=noise)
    assert_close(s_pred, inf["s_pred"], 5e-6, "s_pred")
    acoustic, prosodic = model.mix_style(s_pred, ref_s if fs.multispeaker else None, alpha=0.3, beta=0.7)
    assert_close(acoustic, inf["ref"], 5e-6, "ref (acoustic style)")
    assert_close(prosodic, inf["s"], 5e-6, "s (prosodic style)")

    d, logits, durations = model.predict_durations(d_en, prosodic, torch.tensor([tokens.shape[1]]), mask)
    assert_close(d, inf["d"], 2e-5, "d")
    assert_close(logits, inf["duration_logits"], 5e-6, "duration_logits")
    assert torch.equal(durations[0], inf["pred_dur_model"]), "rounded durations differ"

    alignment = model.hard_alignment(inf["pred_dur"])
    assert torch.equal(alignment, inf["pred_aln_trg"])
    torch.manual_seed(seeds["decoder"])
    wave, f0, energy = model.decode(t_en, d, alignment, acoustic, prosodic)
    assert_close(f0, inf["F0_pred"], 2e-5, "F0")
    assert_close(energy, inf["N_pred"], 2e-5, "energy")
    # README 9.3: HiFi-GAN matches to float32 noise; iSTFTNet is bit-exact only with identical ops.
    assert_close(wave, inf["out"], 1e-4 if fs.config["model_params"]["decoder"]["type"] == "hifigan" else 1e-3, "waveform")


def test_synthesize_chain_with_given_durations_reproduces_the_reference(loaded):
    fs, model, _ = loaded
    fx, inf, seeds = fs.fx, fs.fx["infer_fixed"], fs.fx["meta"]["seeds"]
    ref_s = model.compute_style(fx["ref_mel"]) if fs.multispeaker else None
    torch.manual_seed(seeds["sampler"])
    # synthesize draws the diffusion noise itself: same draw order as the notebook
    out = model.synthesize(inf["tokens"], ref_s, alpha=0.3, beta=0.7, diffusion_steps=5, durations=inf["pred_dur"],
                           return_intermediates=True)
    assert torch.is_inference(out.wave)
    assert out.wave.shape == (600 * int(inf["pred_dur"].sum()),)
    assert_close(out.style, torch.cat([inf["ref"], inf["s"]], -1), 5e-6, "style")
    assert_close(out.f0, inf["F0_pred"], 2e-5, "F0")
