"""tts-zoo: a text-to-speech model zoo built around a registry of swappable components.

Importing ``tts_zoo`` is cheap (no torch); ``tts_zoo.registry`` lists, validates and builds.
"""

__version__ = "0.1.0"
