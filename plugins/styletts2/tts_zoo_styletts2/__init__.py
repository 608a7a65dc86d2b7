"""StyleTTS 2 (Li et al. 2023) for tts-zoo, as a plugin.

Registered through the ``tts_zoo.plugins`` entry point exactly as a third-party package is; the
catalogue of its components is ``registry.yaml`` beside this file. Importing this package must stay
cheap (no torch): listing and validation read only the catalogue.
"""
