"""tts-zoo: a text-to-speech model zoo built around a registry of swappable components.

Importing ``tts_zoo`` is cheap (no torch); ``tts_zoo.registry`` lists, validates and builds.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `tts_zoo.Synthesizer` on first use, so that importing tts_zoo stays cheap.
    if name == "Synthesizer":
        from tts_zoo.synthesize import Synthesizer

        return Synthesizer
    raise AttributeError(f"module 'tts_zoo' has no attribute {name!r}")
