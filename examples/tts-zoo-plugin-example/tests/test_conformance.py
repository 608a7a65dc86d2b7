"""The example plugin keeps tts-zoo's contracts (the conformance kit, ``tts_zoo.testing``).

Run with the plugin installed: ``pip install -e examples/tts-zoo-plugin-example`` then
``pytest examples/tts-zoo-plugin-example/tests``.
"""

import pytest

from tts_zoo.testing import all_checks


@pytest.mark.parametrize("name, check", all_checks("sampler", "ddim"))
def test_ddim_keeps_the_sampler_contract(name, check):
    check()


@pytest.mark.parametrize("name, check", all_checks("sampler", "ddim", eta=1.0))
def test_ancestral_ddim_keeps_the_sampler_contract(name, check):
    check()


@pytest.mark.parametrize("name, check", all_checks("model", "sine_tts", beep_ms=10.0, sampler={"component": "ddim"}))
def test_sine_tts_keeps_the_model_contract(name, check):
    check()
