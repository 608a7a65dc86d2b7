"""Seconds per training step and peak memory of the *reference* StyleTTS 2 (yl4579/StyleTTS2), on the
batches our own benchmark (benchmarks/train_step.py) trains on: the yardstick for issue 11.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/reference_train_step.py --reference /path/to/StyleTTS2 \
        [--config Configs/config_libritts.yml] [--decoder config|istftnet] [--stage 1|2] [--steps 3] \
        [--batch-size 2] [--max-len 184] [--recipe recipes/libritts_istft.yaml] [--data DIR] [OVERRIDE ...]

``--reference`` is a clone of yl4579/StyleTTS2 (its weight files are not needed). The harness imports
the clone's own modules, losses and optimizer (models.build_model, losses.MultiResolutionSTFTLoss /
GeneratorLoss / DiscriminatorLoss, optimizers.build_optimizer, utils.maximum_path ...) and replays
the body of one step of its train_first.py (``--stage 1``, from TMA_epoch: aligner + MAS, 50 % soft /
hard attention, random clips, F0, style, decoder, MPD/MSD step, mel + mono + s2s + gen losses, step)
or train_second.py (``--stage 2``, from diff_epoch, before joint_epoch: styles, PL-BERT, diffusion +
sampler, prosody predictor, MPD/MSD step, mel, F0, norm, duration, gen, sty, diff losses, step).
It prints each step's loss terms, whether the weights changed, the median and min s/step over
``--steps`` steps after 2 warm-up steps, and the process's peak RSS (VmHWM). torch takes its
thread count from OMP_NUM_THREADS, as in our benchmark. Config_libritts.yml has the HiFi-GAN decoder;
``--decoder istftnet`` takes the decoder block of the clone's Configs/config.yml instead: the pairing
of recipes/libritts_istft.yaml, so compare our full-width stage 1 with

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/reference_train_step.py --reference /path/to/StyleTTS2 --decoder istftnet --stage 1

The tiny reference-format configs of the parity fixtures ($STYLETTS2_FIXTURES/tiny_istftnet.yml,
tiny_hifigan.yml; see tests/styletts2/reference.py) also run, for checking this harness quickly:
their ``reference_hardwired_overrides`` give the decoder and MPD/MSD widths the reference hard-wires
(the JDC stays at its official size); official configs never have that section.

Needs, besides the project's venv: ``pip install munch einops-exts`` (the reference imports them).
torchaudio and the Cython ``monotonic_align`` cannot be installed here: this file puts small
stand-ins into ``sys.modules`` (torchaudio's MelSpectrogram / create_dct from tts_zoo.audio, which
match them; monotonic_align from the ``monotonic-alignment-search`` core our aligner uses, the same
Cython kernel and layout); matplotlib (TensorBoard images only) is stubbed.

What differs from running the reference's scripts: no WavLM unless ``--wavlm`` (then either stage adds its
SLM feature loss on a randomly initialised WavLM of the base shape, as our benchmark does with
``'model.slm_discriminator={component: wavlm, ..., random_init_config: {}}'``; stage 2's SLM adversarial
step, which starts at joint_epoch, is not replayed by either); no accelerate / DataParallel wrappers (one CPU process); random weights everywhere (ASRCNN, JDCNet and
PL-BERT's Albert built from their configs, not loaded; stage 2 does not load a first-stage
checkpoint but copies the style encoder into the prosodic one as it does after loading); batches
from our data loader and Collater (the demo corpus, the same batches as train_step.py) instead of
its meldataset; the CPU stands in for its literal ``.to('cuda')`` in the decoders; logging,
TensorBoard and checkpointing are not run. Stage 2, like our benchmark, first takes 2 untimed
stage-1 steps so that freshly initialised modules give finite losses (without them the random
spectral-norm style encoders make its F0/diffusion losses explode and then NaN); the peak RSS of
``--stage 2`` thus includes those steps, as ours does.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from train_step import REPO, demo_data, peak_rss_gib  # our benchmark: the same corpus and memory read-out


def fail(message: str) -> None:
    print(f"reference_train_step: {message}", file=sys.stderr)
    sys.exit(2)


def install_stand_ins() -> None:
    """torchaudio, monotonic_align and matplotlib as the reference imports them, from our code."""
    import transformers  # noqa: F401  (first: it probes for torchaudio, which a stand-in would confuse)
    from transformers import AlbertConfig, AlbertModel, AutoModel  # noqa: F401
    from monotonic_alignment_search.core import maximum_path_c
    from tts_zoo.audio import dct_matrix, mel_spectrogram, resample
    from tts_zoo_styletts2.aligner.monotonic import mask_from_lens, maximum_path

    class MelSpectrogram(torch.nn.Module):  # torchaudio.transforms.MelSpectrogram (HTK, no norm, Hann, centred)
        def __init__(self, sample_rate=16000, n_fft=400, win_length=None, hop_length=None, f_min=0.0, f_max=None,
                     n_mels=128, window_fn=torch.hann_window, power=2.0):
            super().__init__()
            assert window_fn is torch.hann_window, "stand-in supports the Hann window only"
            self.kw = dict(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length or n_fft,
                           hop_length=hop_length or (win_length or n_fft) // 2, n_mels=n_mels, f_min=f_min,
                           f_max=f_max, power=power)

        def forward(self, wave):
            return mel_spectrogram(wave, **self.kw)

    class Resample(torch.nn.Module):  # torchaudio.transforms.Resample (sinc_interp_hann, width 6, rolloff 0.99)
        def __init__(self, orig_freq=16000, new_freq=16000):
            super().__init__()
            self.rates = orig_freq, new_freq

        def forward(self, wave):
            return resample(wave, *self.rates)

    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    transforms = module("torchaudio.transforms", MelSpectrogram=MelSpectrogram, Resample=Resample)
    functional = module("torchaudio.functional", create_dct=lambda n_mfcc, n_mels, norm: dct_matrix(n_mfcc, n_mels, norm))
    module("torchaudio", transforms=transforms, functional=functional)
    core = module("monotonic_align.core", maximum_path_c=maximum_path_c)
    module("monotonic_align", maximum_path=maximum_path, mask_from_lens=mask_from_lens, core=core)
    pyplot = module("matplotlib.pyplot")
    module("matplotlib", pyplot=pyplot)
    if not torch.cuda.is_available():
        # the decoders move their F0/N smoothing kernels .to('cuda'); MSD moves its window .to(y.get_device()) (-1 on a CPU)
        to = torch.Tensor.to

        def to_cpu(self, *args, **kwargs):
            if args and (isinstance(args[0], str) and args[0].startswith("cuda") or isinstance(args[0], int) and args[0] < 0):
                args = ("cpu", *args[1:])
            return to(self, *args, **kwargs)

        torch.Tensor.to = to_cpu


def find_file(candidates: list[Path], what: str) -> Path:
    for path in candidates:
        if path.is_file():
            return path
    fail(f"{what} not found (looked at {', '.join(map(str, candidates))}); put the reference's "
         f"{what} there, from a full clone of yl4579/StyleTTS2")


def random_wavlm() -> None:
    """WavLMLoss loads its speech LM with AutoModel.from_pretrained(hub name): hand it a randomly
    initialised WavLM of transformers' default (base / base-plus) shape instead, as our benchmark's
    ``model.slm_discriminator.random_init_config={}`` does."""
    import transformers

    transformers.AutoModel.from_pretrained = staticmethod(lambda *a, **k: transformers.WavLMModel(transformers.WavLMConfig()).eval())


def build_reference(ref: Path, config: dict, config_dir: Path, decoder: str, wavlm: bool):
    """The reference's Munch of modules (random weights), built as its training scripts do."""
    from transformers import AlbertConfig

    from models import ASRCNN, JDCNet, build_model
    from utils import recursive_munch
    from Utils.PLBERT.util import CustomAlbert

    def aux(key: str, default: str, name: str = "") -> dict:
        value = str(config.get(key) or default)
        path = find_file([base / value / name for base in (config_dir, ref)] + [ref / default / name], f"{key} ({Path(default, name)})")
        return yaml.safe_load(path.read_text())

    text_aligner = ASRCNN(**aux("ASR_config", "Utils/ASR/config.yml")["model_params"])  # load_ASR_models without weights
    pitch_extractor = JDCNet(num_class=1, seq_len=192)  # load_F0_models without weights
    bert = CustomAlbert(AlbertConfig(**aux("PLBERT_dir", "Utils/PLBERT", "config.yml")["model_params"]))
    params = recursive_munch(config["model_params"])
    if decoder == "istftnet":
        params.decoder = recursive_munch(yaml.safe_load((ref / "Configs/config.yml").read_text())["model_params"]["decoder"])
    model = build_model(params, text_aligner, pitch_extractor, bert)
    if "reference_hardwired_overrides" in config:  # our tiny fixture configs (for checking this harness)
        tiny_widths(model, params, config["reference_hardwired_overrides"])
    if not wavlm:
        del model["wd"]  # the WavLM discriminator head: no WavLM in this comparison
    return model, params


def tiny_widths(model, params, widths: dict) -> None:
    """Our tiny fixture configs (for checking this harness) carry the widths the reference hard-wires
    (decoder 1024/64 and 512 = hidden_dim, upsample_initial_channel; MPD/MSD channels) in
    reference_hardwired_overrides: rebuild those sub-modules with the same classes at those widths
    (the JDC, whose forward hard-wires 512, stays official). Never used with the official configs."""
    block, d, r, sd = sys.modules[type(model.decoder).__module__].AdainResBlk1d, widths["decoder_hidden_dim"], widths["decoder_asr_res_dim"], params.style_dim
    model.decoder.encode = block(params.hidden_dim + 2, d, sd)
    model.decoder.decode = torch.nn.ModuleList([block(d + 2 + r, d, sd) for _ in range(3)] +
                                               [block(d + 2 + r, params.decoder.upsample_initial_channel, sd, upsample=True)])
    wn, conv = torch.nn.utils.weight_norm, torch.nn.Conv2d
    model.decoder.asr_res = torch.nn.Sequential(wn(torch.nn.Conv1d(params.hidden_dim, r, kernel_size=1)))
    c = [1, *widths["mpd_channels"]]
    for disc in model.mpd.discriminators:
        disc.convs = torch.nn.ModuleList([wn(conv(c[i], c[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0))) for i in range(5)])
        disc.conv_post = wn(conv(c[5], 1, (3, 1), 1, padding=(1, 0)))
    m = widths["msd_channels"]
    for disc in model.msd.discriminators:
        disc.discriminators = torch.nn.ModuleList([wn(conv(1, m, (3, 9), padding=(1, 4)))] +
                                                  [wn(conv(m, m, (3, 9), stride=(1, 2), padding=(1, 4))) for _ in range(3)] +
                                                  [wn(conv(m, m, (3, 3), padding=(1, 1)))])
        disc.out = wn(conv(m, 1, 3, 1, 1))


def optimizer_for(model, config: dict, stage: int, steps_per_epoch: int):
    """The reference's MultiOptimizer with the settings its train_first.py / train_second.py give it."""
    from optimizers import build_optimizer

    opt = config["optimizer_params"]
    sched = {"max_lr": float(opt.get("lr", 1e-4)), "pct_start": 0.0, "steps_per_epoch": steps_per_epoch,
             "epochs": config.get("epochs_1st" if stage == 1 else "epochs_2nd", 200)}
    scheds = {key: dict(sched) for key in model}
    if stage == 2:
        scheds["bert"]["max_lr"] = opt["bert_lr"] * 2
        scheds["decoder"]["max_lr"] = scheds["style_encoder"]["max_lr"] = opt["ft_lr"] * 2
    optimizer = build_optimizer({key: model[key].parameters() for key in model}, scheduler_params_dict=scheds,
                                lr=float(opt.get("lr", 1e-4)))
    if stage == 2:  # train_second.py's adjustments after building it
        for g in optimizer.optimizers["bert"].param_groups:
            g.update(betas=(0.9, 0.99), lr=opt["bert_lr"], initial_lr=opt["bert_lr"], min_lr=0, weight_decay=0.01)
        for key in ("decoder", "style_encoder"):
            for g in optimizer.optimizers[key].param_groups:
                g.update(betas=(0.0, 0.99), lr=opt["ft_lr"], initial_lr=opt["ft_lr"], min_lr=0, weight_decay=1e-4)
    return optimizer


def clips(asr, mels, waves, lengths, max_len, extra=None):
    """The scripts' random crops: (en, gt, wav, st[, extra crop]) with numpy's RNG, as they draw them."""
    mel_len = min(int(lengths.min().item() / 2 - 1), max_len // 2)
    mel_len_st = int(lengths.min().item() / 2 - 1)
    en, gt, wav, st, ex = [], [], [], [], []
    for b in range(len(lengths)):
        n = int(lengths[b].item() / 2)
        start = np.random.randint(0, n - mel_len)
        en.append(asr[b, :, start:start + mel_len])
        if extra is not None:
            ex.append(extra[b, :, start:start + mel_len])
        gt.append(mels[b, :, start * 2:(start + mel_len) * 2])
        wav.append(waves[b][start * 2 * 300:(start + mel_len) * 2 * 300])
        start = np.random.randint(0, n - mel_len_st)
        st.append(mels[b, :, start * 2:(start + mel_len_st) * 2])
    out = [torch.stack(en), torch.stack(gt).detach(), torch.stack(wav).float().detach(), torch.stack(st).detach()]
    return out + ([torch.stack(ex)] if extra is not None else [])


def align(R, model, texts, input_lengths, mels, mel_lengths, n_down, zero_padding: bool):
    """Text aligner → (s2s logits, attention [B, T, F/2] without its SOS column, its MAS path)."""
    text_mask, mask = R.length_to_mask(input_lengths), R.length_to_mask(mel_lengths // 2 ** n_down)
    _, s2s_pred, attn = model.text_aligner(mels, mask, texts)
    attn = attn.transpose(-1, -2)[..., 1:].transpose(-1, -2)
    if zero_padding:  # stage 1 zeroes it outside either length
        attn.masked_fill_(text_mask.unsqueeze(2) | mask.unsqueeze(1), 0.0)
    with torch.no_grad():
        path = R.maximum_path(attn, R.mask_from_lens(attn, input_lengths, mel_lengths // 2 ** n_down))
    return s2s_pred, attn, path


def stage1_step(R, model, batch, optimizer, lp, params, max_len, n_down):
    """One step of train_first.py at epoch >= TMA_epoch (the WavLM loss with --wavlm)."""
    waves, texts, input_lengths, _, _, mels, mel_lengths = batch[:7]
    s2s_pred, attn, path = align(R, model, texts, input_lengths, mels, mel_lengths, n_down, zero_padding=True)
    t_en = model.text_encoder(texts, input_lengths, R.length_to_mask(input_lengths))
    asr = t_en @ attn if bool(random.getrandbits(1)) else t_en @ path
    en, gt, wav, st = clips(asr, mels, waves, mel_lengths, max_len)
    if gt.shape[-1] < 80:
        return None
    with torch.no_grad():
        real_norm = R.log_norm(gt.unsqueeze(1)).squeeze(1)
        f0_real, _, _ = model.pitch_extractor(gt.unsqueeze(1))
    s = model.style_encoder(st.unsqueeze(1) if params.multispeaker else gt.unsqueeze(1))
    y_rec = model.decoder(en, f0_real, real_norm, s)

    optimizer.zero_grad()
    d_loss = R.dl(wav.detach().unsqueeze(1).float(), y_rec.detach()).mean()
    d_loss.backward()
    optimizer.step("msd")
    optimizer.step("mpd")

    optimizer.zero_grad()
    terms = {"mel": R.stft_loss(y_rec.squeeze(), wav.detach())}
    terms["s2s"] = sum(F.cross_entropy(p[:n], t[:n]) for p, t, n in zip(s2s_pred, texts, input_lengths)) / texts.size(0)
    terms["mono"] = F.l1_loss(attn, path) * 10
    terms["gen"] = R.gl(wav.detach().unsqueeze(1).float(), y_rec).mean()
    if R.wl is not None:
        terms["slm"] = R.wl(wav.detach(), y_rec).mean()
    g_loss = sum(lp[f"lambda_{k}"] * v for k, v in terms.items())
    g_loss.backward()
    for key in ("text_encoder", "style_encoder", "decoder", "text_aligner", "pitch_extractor"):
        optimizer.step(key)
    return {"d": d_loss, **terms, "g": g_loss}


def stage2_step(R, model, batch, optimizer, lp, params, max_len, n_down):
    """One step of train_second.py at diff_epoch <= epoch < joint_epoch (the WavLM loss with --wavlm)."""
    waves, texts, input_lengths, _, _, mels, mel_lengths, ref_mels = batch[:8]
    with torch.no_grad():
        text_mask = R.length_to_mask(input_lengths)
        _, _, path = align(R, model, texts, input_lengths, mels, mel_lengths, n_down, zero_padding=False)
        asr = model.text_encoder(texts, input_lengths, text_mask) @ path
        d_gt = path.sum(axis=-1)
        if params.multispeaker:
            ref = torch.cat([model.style_encoder(ref_mels.unsqueeze(1)), model.predictor_encoder(ref_mels.unsqueeze(1))], dim=1)
    ss, gs = [], []  # whole-utterance styles, one item at a time (the scripts' avg-pool needs it)
    for b in range(len(mel_lengths)):
        mel = mels[b, :, :mel_lengths[b]].unsqueeze(0).unsqueeze(1)
        ss.append(model.predictor_encoder(mel))
        gs.append(model.style_encoder(mel))
    s_dur, gs = torch.stack(ss).squeeze(), torch.stack(gs).squeeze()
    s_trg = torch.cat([gs, s_dur], dim=-1).detach()
    bert_dur = model.bert(texts, attention_mask=(~text_mask).int())
    d_en = model.bert_encoder(bert_dur).transpose(-1, -2)

    num_steps = np.random.randint(3, 5)
    if params.diffusion.dist.estimate_sigma_data:
        model.diffusion.diffusion.sigma_data = s_trg.std(axis=-1).mean().item()
    features = {"features": ref} if params.multispeaker else {}
    s_preds = R.sampler(noise=torch.randn_like(s_trg).unsqueeze(1), embedding=bert_dur, embedding_scale=1,
                        embedding_mask_proba=0.1, num_steps=num_steps, **features).squeeze(1)
    if params.multispeaker:
        loss_diff = model.diffusion(s_trg.unsqueeze(1), embedding=bert_dur, features=ref).mean()
    else:
        loss_diff = model.diffusion.diffusion(s_trg.unsqueeze(1), embedding=bert_dur).mean()
    loss_sty = F.l1_loss(s_preds, s_trg.detach())

    d, p = model.predictor(d_en, s_dur, input_lengths, path, text_mask)
    en, gt, wav, st, p_en = clips(asr, mels, waves, mel_lengths, max_len, extra=p)
    if gt.size(-1) < 80:
        return None
    style_in = st.unsqueeze(1) if params.multispeaker else gt.unsqueeze(1)
    s_dur = model.predictor_encoder(style_in)
    s = model.style_encoder(style_in)
    with torch.no_grad():
        f0_real, _, f0 = model.pitch_extractor(gt.unsqueeze(1))
        f0.reshape(f0.shape[0], f0.shape[1] * 2, f0.shape[2], 1).squeeze()  # computed, then unused, by the script
        model.text_aligner.get_feature(gt)  # likewise
        n_real = R.log_norm(gt.unsqueeze(1)).squeeze(1)
        wav = model.decoder(en, f0_real, n_real, s)  # before joint_epoch the target is the decoder's reconstruction
    f0_fake, n_fake = model.predictor.F0Ntrain(p_en, s_dur)
    y_rec = model.decoder(en, f0_fake, n_fake, s)

    optimizer.zero_grad()
    d_loss = R.dl(wav.detach(), y_rec.detach()).mean()
    d_loss.backward()
    optimizer.step("msd")
    optimizer.step("mpd")

    optimizer.zero_grad()
    terms = {"mel": R.stft_loss(y_rec, wav), "gen": R.gl(wav, y_rec).mean(), "ce": 0.0, "dur": 0.0}
    for pred, dur, n in zip(d, d_gt, input_lengths):
        pred, dur = pred[:n, :], dur[:n].long()
        target = torch.zeros_like(pred)
        for k in range(target.shape[0]):
            target[k, :dur[k]] = 1
        terms["dur"] = terms["dur"] + F.l1_loss(torch.sigmoid(pred).sum(axis=1)[1:n - 1], dur[1:n - 1])
        terms["ce"] = terms["ce"] + F.binary_cross_entropy_with_logits(pred.flatten(), target.flatten())
    terms["ce"], terms["dur"] = terms["ce"] / texts.size(0), terms["dur"] / texts.size(0)
    terms.update(F0=F.smooth_l1_loss(f0_real, f0_fake) / 10, norm=F.smooth_l1_loss(n_real, n_fake), sty=loss_sty, diff=loss_diff)
    if R.wl is not None:
        terms["slm"] = R.wl(wav.detach().squeeze(), y_rec.squeeze()).mean()
    g_loss = sum(lp[f"lambda_{k}"] * v for k, v in terms.items())
    g_loss.backward()
    for key in ("bert_encoder", "bert", "predictor", "predictor_encoder", "diffusion"):
        optimizer.step(key)
    return {"d": d_loss, **terms, "g": g_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True, help="a clone of yl4579/StyleTTS2")
    parser.add_argument("--config", help="reference-format config yml (default: Configs/config_libritts.yml in the clone)")
    parser.add_argument("--decoder", choices=["config", "istftnet"], default="config",
                        help="istftnet: the decoder block of the clone's Configs/config.yml (as recipes/libritts_istft.yaml)")
    parser.add_argument("--stage", choices=["1", "2"], default="1")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--wavlm", action="store_true",
                        help="with the WavLM feature loss, on a randomly initialised WavLM (base shape)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-len", type=int, default=184, help="the reference's max_len (our data.max_frames)")
    parser.add_argument("--recipe", default=str(REPO / "recipes/libritts_istft.yaml"), help="our recipe: data settings only")
    parser.add_argument("--data", help="a prepared corpus folder (default: data/demo, else a fresh demo corpus)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of our recipe (data loading)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # as the reference's scripts (deprecations from its weight_norm etc.)

    ref = Path(args.reference).resolve()
    if not all((ref / name).exists() for name in ("models.py", "train_first.py", "losses.py", "optimizers.py", "Modules", "Utils")):
        fail(f"{ref} is not a StyleTTS 2 clone (no models.py, train_first.py, Modules/ ...): pass --reference /path/to/StyleTTS2")
    config_path = Path(args.config) if args.config else ref / "Configs/config_libritts.yml"
    if not config_path.is_file():
        fail(f"config not found: {config_path}")
    config = yaml.safe_load(config_path.read_text())
    stage = int(args.stage)

    from tts_zoo import registry
    from tts_zoo.data.collate import Collater
    from tts_zoo.recipe import load_recipe
    from tts_zoo.train.data import make_loaders, speech_datasets
    from tts_zoo.train.distributed import setup

    install_stand_ins()
    sys.path.insert(0, str(ref))
    R = types.SimpleNamespace()  # the reference's functions and losses the steps use
    import losses
    import utils
    from Modules.diffusion.sampler import ADPM2Sampler, DiffusionSampler, KarrasSchedule

    R.length_to_mask, R.log_norm, R.maximum_path, R.mask_from_lens = utils.length_to_mask, utils.log_norm, utils.maximum_path, utils.mask_from_lens

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    if args.wavlm:
        random_wavlm()
    model, params = build_reference(ref, config, config_path.resolve().parent, args.decoder, args.wavlm)
    n_down = model.text_aligner.n_down
    R.stft_loss = losses.MultiResolutionSTFTLoss()
    R.gl, R.dl = losses.GeneratorLoss(model.mpd, model.msd), losses.DiscriminatorLoss(model.mpd, model.msd)
    R.sampler = DiffusionSampler(model.diffusion.diffusion, sampler=ADPM2Sampler(),
                                 sigma_schedule=KarrasSchedule(sigma_min=0.0001, sigma_max=3.0, rho=9.0), clamp=False)
    lp = config["loss_params"]
    R.wl = losses.WavLMLoss(params.slm.model, model.wd, config["preprocess_params"]["sr"], params.slm.sr) if args.wavlm else None

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or demo_data(Path(tmp))
        recipe = load_recipe(args.recipe, [f"data.train={root}/train.jsonl", f"data.val={root}/val.jsonl", "data.ood_texts=null",
                                           f"data.batch_size={args.batch_size}", f"data.max_frames={args.max_len}", *args.overrides])
        frontend = registry.build_component(recipe.model["frontend"], "text_frontend")
        train_set, _ = speech_datasets(recipe, frontend)
        loader, batches, _ = make_loaders(recipe, setup("cpu"), train_set, None, Collater(ref_frames=recipe.data.ref_frames))
        batches.set_epoch(0)
        n_params = sum(p.numel() for m in model.values() for p in m.parameters())
        print(f"reference {ref.name} with {config_path.name} ({params.decoder.type} decoder), stage {stage}: {n_params / 1e6:.2f} M "
              f"parameters, batch {args.batch_size}, max_len {args.max_len}, {torch.get_num_threads()} threads")

        def run(step, optimizer, n, watched=()):
            """n counted steps (skipped batches do not count); → the times of those after the first 2."""
            times, it, i = [], iter(loader), 0
            while i < n:
                batch = next(it, None)
                if batch is None:
                    it = iter(loader)
                    continue
                before = {k: next(model[k].parameters()).detach().clone() for k in watched} if i == 0 else {}
                t0 = time.perf_counter()
                terms = step(R, model, batch, optimizer, lp, params, args.max_len, n_down)
                elapsed = time.perf_counter() - t0
                if terms is None:
                    print("  (batch too short for a clip: skipped, as the script does)")
                    continue
                if before:
                    print(f"  weights changed by step 0: { {k: not torch.equal(v, next(model[k].parameters())) for k, v in before.items()} }")
                terms = {k: float(v.item() if torch.is_tensor(v) else v) for k, v in terms.items()}
                print(f"  step {i}: {elapsed:.3f} s  " + "  ".join(f"{k} {v:.4f}" for k, v in terms.items())
                      + ("" if all(np.isfinite(v) for v in terms.values()) else "  WARNING: non-finite loss"))
                times += [elapsed] if i >= 2 else []
                i += 1
            return times

        for m in model.values():
            m.train()  # train_first.py trains every module in train mode
        if stage == 2:
            print("  2 untimed stage-1 steps first (fresh modules give non-finite stage-2 losses otherwise):")
            run(stage1_step, optimizer_for(model, config, 1, len(loader)), 2)
            # train_second.py deep-copies the loaded style encoder into the prosodic one; after a forward pass
            # the spectral-norm weights are not deep-copyable, so copy its state into the identical module
            model.predictor_encoder.load_state_dict(model.style_encoder.state_dict())
            for m in model.values():
                m.eval()
            for key in ("predictor", "bert_encoder", "bert", "msd", "mpd"):
                model[key].train()
        watched = ("mpd", "msd", "decoder", "text_aligner") if stage == 1 else ("mpd", "msd", "predictor", "diffusion", "bert")
        optimizer = optimizer_for(model, config, stage, len(loader))
        times = run(stage1_step if stage == 1 else stage2_step, optimizer, args.steps + 2, watched)
        name = "stage 1, from TMA_epoch" if stage == 1 else "stage 2, style diffusion on"
        print(f"reference {name:27s} median {statistics.median(times):.3f} s/step  min {min(times):.3f}")
        print(f"peak RSS of this process: {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
