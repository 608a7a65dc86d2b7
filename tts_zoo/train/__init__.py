"""The generic training loop: ``tts_zoo.train.loop.train(recipe)`` runs a recipe's stages.

Importing this package is cheap (no torch): the CLI imports ``tts_zoo.train.commands`` at start-up.
"""

from tts_zoo.errors import TTSZooError


class TrainingError(TTSZooError):
    """Training cannot go on (no data, repeated non-finite losses, a run directory in the way, ...);
    the message says why and what to do."""
