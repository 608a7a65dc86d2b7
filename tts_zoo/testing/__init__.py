"""The conformance kit: does a component keep its kind's contract? (in the spirit of scikit-learn's
``check_estimator``). A plugin author calls it from their own tests::

    from tts_zoo.testing import all_checks, check_component

    check_component("vocoder", "my_vocoder", dim_in=16, style_dim=8)   # by registered name, small kwargs
    check_component(MyVocoder, dim_in=16, style_dim=8)                 # by class
    check_component(MyVocoder(dim_in=16, style_dim=8))                 # an instance (checked on copies)

    @pytest.mark.parametrize("name, check", all_checks("sampler", "my_sampler"))
    def test_my_sampler(name, check):
        check()

Each check raises ``AssertionError`` naming the component, the check and the violated rule. The
constructor arguments not given come from the catalogue's defaults (pass small ones where those
build a big model); ``sizes={...}`` gives contract widths the kit cannot read from the constructor
arguments (``tts_zoo.testing.subject.SIZE_ARGS``) and ``registry=`` a registry other than the
installed plugins'.

The checks (names as ``all_checks`` yields them):

- every kind: ``recipe_kwargs`` (catalogue params = constructor parameters, no ``**kwargs``) and
  ``catalogue_in_sync`` (the plugin's registry.yaml entry is what ``tts-zoo catalogue`` generates);
- ``contract``: shapes, dtypes and units of the kind's interface (``tts_zoo.interfaces``) on small
  seeded inputs; for samplers also the callback, the generator, and sampling a known Gaussian;
- ``gradients``: gradients reach the parameters and the inputs the contract names (samplers: the
  denoiser's parameters, ``noise`` and ``extra_args``; vocoders: features, F0, energy and style;
  discriminators: the generated wave; duration models, style diffusion: their inputs);
- nn.Module kinds: ``state_dict_round_trip`` (through a tts-zoo checkpoint into a fresh instance),
  ``dtype_round_trip`` (float32 → float64 → float32), and ``device_round_trip`` where CUDA is
  available (noise schedules: ``device``, the sigmas on the GPU).

Kinds checked by the catalogue checks only: ``loss`` (its arguments are each loss's own, so there
is no call to make generically) and ``stage`` (a stage needs a built model, data and the training
loop: each stage's integration test covers it), and kinds a plugin declares itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Optional

from tts_zoo.registry import Registry
from tts_zoo.testing.catalogue_checks import check_catalogue_in_sync, check_recipe_kwargs
from tts_zoo.testing.subject import Subject, subject

__all__ = ["Subject", "all_checks", "check_component", "checks_for", "subject"]


def checks_for(s: Subject) -> dict[str, Callable[[Subject], None]]:
    """The named checks that apply to ``s`` (by its kind and flavour), in the order they run."""
    from tts_zoo.testing import models, networks, sampling
    from tts_zoo.testing.modules import module_checks

    by_flavour: dict[str, dict[str, Callable[[Subject], None]]] = {
        "text_frontend": models.FRONTEND_CHECKS,
        "text_encoder": module_checks(networks.TEXT_ENCODER),
        "language_model": module_checks(networks.LANGUAGE_MODEL),
        "style_encoder": module_checks(networks.STYLE_ENCODER),
        "style_diffusion": module_checks(networks.STYLE_DIFFUSION),
        "sampler": sampling.SAMPLER_CHECKS,
        "noise_schedule": sampling.SCHEDULE_CHECKS,
        "duration_model": module_checks(networks.DURATION_MODEL),
        "vocoder": module_checks(networks.VOCODER),
        "discriminator": module_checks(networks.DISCRIMINATOR),
        "aligner": module_checks(networks.ALIGNER),
        "pitch_extractor_mel": module_checks(networks.PITCH_EXTRACTOR_MEL),
        "pitch_extractor_wave": {"contract": networks.check_wave_pitch_extractor},
        "model": models.MODEL_CHECKS,
    }
    return {"recipe_kwargs": check_recipe_kwargs, "catalogue_in_sync": check_catalogue_in_sync,
            **by_flavour.get(s.flavour, {})}


def _labelled(s: Subject, name: str, check: Callable[[Subject], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            check(s)
        except AssertionError as e:
            raise AssertionError(f"{s.label}: {name}: {e}").with_traceback(e.__traceback__) from None
        except Exception as e:
            e.add_note(f"(raised while checking {s.label}: {name})")
            raise

    run.__name__ = name
    return run


def all_checks(component: Any, name: Optional[str] = None, /, *, registry: Optional[Registry] = None,
               sizes: Optional[dict[str, Any]] = None, **kwargs: Any) -> list[tuple[str, Callable[[], None]]]:
    """``(check_name, check)`` pairs for ``pytest.mark.parametrize``; ``check()`` builds the component
    (nothing is built before) and raises AssertionError on the first violated rule. Arguments as
    :func:`check_component`."""
    s = subject(component, name, registry=registry, sizes=sizes, **kwargs)
    return [(n, _labelled(s, n, c)) for n, c in checks_for(s).items()]


def check_component(component: Any, name: Optional[str] = None, /, *, registry: Optional[Registry] = None,
                    sizes: Optional[dict[str, Any]] = None, **kwargs: Any) -> list[str]:
    """Run every check that applies; return their names. ``component`` is a kind with ``name`` (a
    registered component, built through the registry from ``kwargs``), a class (built from
    ``kwargs``) or an instance."""
    checks = all_checks(component, name, registry=registry, sizes=sizes, **kwargs)
    for _, check in checks:
        check()
    return [n for n, _ in checks]
