"""The conformance kit fails components that break their contract, with a message naming the rule,
and passes minimal correct ones (toy components defined here; a toy registry for the catalogue)."""

import re

import pytest
import torch
from torch import nn

from tts_zoo.catalogue import params_from_class, summary_of
from tts_zoo.interfaces import NoiseSchedule, PitchExtractor, Sampler, TextFrontend, Vocoder
from tts_zoo.registry import PluginSource, Registry
from tts_zoo.testing import all_checks, check_component


def run(check_name, *component, **kwargs):
    """Run one named check of ``all_checks(*component, **kwargs)``."""
    checks = dict(all_checks(*component, **kwargs))
    assert check_name in checks, f"{check_name} not among {list(checks)}"
    checks[check_name]()


def fails(check_name, pattern, *component, **kwargs):
    """The check fails with a message matching ``pattern``; returns the message."""
    with pytest.raises(AssertionError) as e:
        run(check_name, *component, **kwargs)
    assert re.search(pattern, str(e.value)), str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- samplers


class EulerSampler(Sampler):
    """Euler steps of the probability-flow ODE (correct: the baseline the broken ones change)."""

    def __call__(self, denoise_fn, noise, sigmas, *, extra_args=None, callback=None, generator=None):
        x = noise * sigmas[0]
        for i in range(len(sigmas) - 1):
            denoised = denoise_fn(x, sigmas[i], **(extra_args or {}))
            if callback:
                callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
            x = denoised + (x - denoised) * sigmas[i + 1] / sigmas[i]
        return x


class NoGradSampler(EulerSampler):
    """The README's sampler before issue 12: right samples, no gradient."""

    @torch.no_grad()
    def __call__(self, *args, **kwargs):
        return super().__call__(*args, **kwargs)


class UnscaledSampler(EulerSampler):
    """Forgets to scale the unit-variance noise by sigmas[0]."""

    def __call__(self, denoise_fn, noise, sigmas, **kwargs):
        return super().__call__(denoise_fn, noise / sigmas[0], sigmas, **kwargs)


class GlobalNoiseSampler(EulerSampler):
    """Adds noise from torch's global generator even when given one."""

    def __call__(self, denoise_fn, noise, sigmas, **kwargs):
        return super().__call__(denoise_fn, noise, sigmas, **kwargs) + 1e-3 * torch.randn_like(noise)


def test_a_correct_sampler_passes_and_a_no_grad_sampler_fails_only_the_gradient_check():
    for name in ("contract", "gradients"):
        run(name, EulerSampler)
    run("contract", NoGradSampler)  # the samples are right: only the gradient check can tell
    message = fails("gradients", r"must not run under torch\.no_grad\(\)", NoGradSampler)
    assert message.startswith("sampler NoGradSampler: gradients: the sample carries no gradient")


def test_samplers_that_ignore_sigma_max_or_the_generator_fail_the_contract():
    fails("contract", r"on N\(1\.5, 0\.5²\).*std 0\.0.*scales it by sigmas\[0\]", UnscaledSampler)
    fails("contract", r"generators seeded alike differ|global RNG", GlobalNoiseSampler)


# ---------------------------------------------------------------- vocoders


class ToyVocoder(Vocoder):
    """A minimal vocoder: one conv of features, F0 (in kHz), energy and style, upsampled by repetition.

    Args:
        channels: Width of the aligned features.
        style_dim: Width of the style.
    """

    def __init__(self, channels: int = 4, style_dim: int = 3):
        super().__init__()
        self.channels, self.style_dim = channels, style_dim  # the kit reads an instance's widths here
        self.proj = nn.Conv1d(channels + 2, 1, 1)
        self.style = nn.Linear(style_dim, 1)

    def features(self, aligned, f0, energy, style):
        prosody = torch.stack([f0 / 1000, energy], 1)[..., ::2]  # [B, 2, F]
        return self.proj(torch.cat([aligned, prosody], 1)) + self.style(style).unsqueeze(-1)

    def forward(self, aligned, f0, energy, style):
        return self.features(aligned, f0, energy, style).repeat_interleave(self.samples_per_frame, -1)


class DetachedF0Vocoder(ToyVocoder):
    def forward(self, aligned, f0, energy, style):
        return super().forward(aligned, f0.detach(), energy, style)


class ShortVocoder(ToyVocoder):
    def forward(self, aligned, f0, energy, style):
        return super().forward(aligned, f0, energy, style)[..., :-1]


class Float32Vocoder(ToyVocoder):
    def forward(self, aligned, f0, energy, style):
        return super().forward(aligned, f0, energy, style).float()


class PlainTensorVocoder(ToyVocoder):
    def __init__(self, channels: int = 4, style_dim: int = 3):
        super().__init__(channels, style_dim)
        self.gain = torch.rand(1)  # not a buffer: a checkpoint would not carry it

    def forward(self, aligned, f0, energy, style):
        return super().forward(aligned, f0, energy, style) * self.gain


def test_a_minimal_vocoder_passes_every_module_check_also_as_an_instance():
    vocoder = ToyVocoder(channels=5)
    before = {k: v.clone() for k, v in vocoder.state_dict().items()}
    names = [n for n, _ in all_checks(vocoder)]
    for name, check in all_checks(vocoder):
        if name not in ("recipe_kwargs", "catalogue_in_sync"):  # not registered: tested below
            check()
    assert names[:5] == ["recipe_kwargs", "catalogue_in_sync", "contract", "gradients", "state_dict_round_trip"]
    assert all(torch.equal(before[k], v) for k, v in vocoder.state_dict().items())  # checks ran on copies


@pytest.mark.parametrize("cls, check_name, pattern", [
    (DetachedF0Vocoder, "gradients", r"no gradient reaches 'f0'"),
    (ShortVocoder, "contract", r"wave \[B, 1, samples_per_frame·F\]: shape \[2, 1, 3599\], the contract says \[2, 1, 3600\]"),
    (Float32Vocoder, "dtype_round_trip", r"output 0 is torch\.float32, expected torch\.float64"),
    (PlainTensorVocoder, "state_dict_round_trip", r"tensor attributes outside the state dict: \['gain'\]"),
])
def test_vocoders_that_break_the_contract_fail_the_matching_check(cls, check_name, pattern):
    fails(check_name, pattern, cls)


def test_the_widths_come_from_the_constructor_arguments_or_sizes():
    run("contract", ToyVocoder, channels=7, style_dim=2)  # read from the arguments given
    no_widths = type("NoWidths", (ToyVocoder,), {"__init__": lambda self: ToyVocoder.__init__(self, 6, 2)})
    with pytest.raises(ValueError, match=r"'channels'; found no constructor argument 'dim_in' or 'channels': "
                                         r"pass sizes=\{'channels': N\}"):
        run("contract", no_widths)
    run("contract", no_widths, sizes={"channels": 6, "style_dim": 2})


# ---------------------------------------------------------------- schedules, pitch, frontends


class NoZeroSchedule(NoiseSchedule):
    def __call__(self, num_steps, device=None):
        return torch.linspace(3.0, 0.1, num_steps + 1, device=device)


class PeriodTracker(PitchExtractor):
    """Reports the period in ms where the contract says Hz."""

    input_kind = "wave"

    def forward(self, wave):
        frames = 1 + wave.shape[-1] // 300
        voiced = (wave.abs().amax(-1, keepdim=True) > 0).float()
        return voiced.expand(-1, frames) * 1000 / 220, None, None

    def describe(self):
        return {}


class HertzTracker(PeriodTracker):
    def forward(self, wave):
        f0, _, _ = super().forward(wave)
        return (f0 > 0).float() * 220.0, None, None


class Letters(TextFrontend):
    symbols = ["_", *"abcdefghijklmnopqrstuvwxyz "]

    def phonemize(self, text):
        return text.lower()

    def encode(self, phonemes):
        return [self.symbols.index(c) for c in phonemes if c in self.symbols]


class OffByOneLetters(Letters):
    def encode(self, phonemes):
        return [i + 1 for i in super().encode(phonemes)]


def test_schedules_pitch_trackers_and_frontends():
    fails("contract", r"schedule\(1\) must end in 0", NoZeroSchedule)
    run("contract", HertzTracker)
    fails("contract", r"f0 of a 220 Hz tone: median 4\.5 Hz \(the contract's unit is Hz\)", PeriodTracker)
    run("contract", Letters)
    fails("contract", r"ids outside the symbol table \(0 \.\. 27\): \[28", OffByOneLetters)


# ---------------------------------------------------------------- catalogue checks


class BagVocoder(ToyVocoder):
    """A vocoder taking a config bag.

    Args:
        channels: Width of the aligned features.
    """

    def __init__(self, channels: int = 4, **config):
        super().__init__(channels, config.get("style_dim", 3))


def toy_registry(**edits):
    """A registry whose catalogue lists the toys as `tts-zoo catalogue` would, then ``edits[name](entry)``."""
    base = Registry(sources=[])
    entries = []
    for name, cls in (("toyvoc", ToyVocoder), ("bagvoc", BagVocoder)):
        entry = {"name": name, "kind": "vocoder", "target": f"{__name__}:{cls.__qualname__}",
                 "summary": summary_of(cls), "params": params_from_class(cls, base.kind_of_class)}
        edits.get(name, lambda e: None)(entry)
        entries.append(entry)
    return Registry(sources=[PluginSource("toys", "toy-dist", data={"plugin": "toys", "components": entries})])


def test_catalogue_checks_pass_in_sync_and_name_what_is_stale():
    assert check_component("vocoder", "toyvoc", registry=toy_registry())[:2] == ["recipe_kwargs", "catalogue_in_sync"]
    stale = toy_registry(toyvoc=lambda e: e["params"]["channels"].update(default=8))
    fails("recipe_kwargs", r"parameter 'channels': the catalogue says default 8, the constructor defaults to 4; "
          r"run `tts-zoo catalogue`", "vocoder", "toyvoc", registry=stale)
    fails("catalogue_in_sync", r"parameter 'channels'", "vocoder", "toyvoc", registry=stale)
    no_help = toy_registry(toyvoc=lambda e: e["params"]["style_dim"].pop("help"))
    fails("catalogue_in_sync", r"'toyvoc' parameter 'style_dim': catalogue", "vocoder", "toyvoc", registry=no_help)


def test_a_config_bag_or_an_unregistered_class_fails_recipe_kwargs():
    fails("recipe_kwargs", r"BagVocoder\.__init__ takes \*\*config: recipe keys must be named", "vocoder", "bagvoc",
          registry=toy_registry())
    fails("recipe_kwargs", r"ToyVocoder is in no installed plugin's registry\.yaml", ToyVocoder, registry=Registry(sources=[]))


def test_kit_arguments_are_checked():
    with pytest.raises(TypeError, match="name the component"):
        all_checks("vocoder")
    with pytest.raises(TypeError, match="not with an instance"):
        all_checks(ToyVocoder(), channels=3)
    with pytest.raises(TypeError, match="implements no kind"):
        all_checks(nn.Linear)


def test_the_device_round_trip_runs_where_cuda_is_and_its_mechanics_hold_on_the_cpu():
    from tts_zoo.testing import subject
    from tts_zoo.testing.modules import check_round_trip
    from tts_zoo.testing.networks import VOCODER

    assert ("device_round_trip" in dict(all_checks(ToyVocoder))) == torch.cuda.is_available()
    check_round_trip(VOCODER, subject(ToyVocoder), lambda m: m.to("cpu"), lambda m: m.cpu(), torch.float32, "cpu")
