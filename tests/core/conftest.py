"""A registry over toy catalogues, independent of the installed plugins."""

import pytest

from tts_zoo.catalogue import params_from_class
from tts_zoo.registry import PluginSource, Registry

TOY = "tests.core.toy_components"


def toy_catalogue(extra=(), plugin="toy"):
    base = Registry(sources=[])
    vocoder_params = params_from_class(__import__(TOY, fromlist=["x"]).ToyVocoder, base.kind_of_class)
    model_params = params_from_class(__import__(TOY, fromlist=["x"]).ToyModel, base.kind_of_class)
    return {
        "plugin": plugin,
        "components": [
            {"name": "toyvoc", "kind": "vocoder", "version": 1, "target": f"{TOY}:ToyVocoder", "summary": "v1", "params": vocoder_params},
            {"name": "toyvoc", "kind": "vocoder", "version": 2, "target": f"{TOY}:ToyVocoder", "summary": "v2", "params": vocoder_params},
            {"name": "istftnet", "kind": "vocoder", "version": 1, "target": f"{TOY}:ToyVocoder", "summary": "", "params": vocoder_params},
            {"name": "toymodel", "kind": "model", "version": 1, "target": f"{TOY}:ToyModel", "summary": "", "params": model_params},
            {"name": "later", "kind": "vocoder", "status": "planned", "target": f"{TOY}:Missing", "summary": "", "params": {}},
            {"name": "fake", "kind": "vocoder", "target": f"{TOY}:NotAVocoder", "summary": "", "params": {}},
            *extra,
        ],
    }


@pytest.fixture
def toy_registry():
    return Registry(sources=[PluginSource("toy", "toy-dist", data=toy_catalogue())])
