"""``python -m tts_zoo`` = the ``tts-zoo`` command."""

from tts_zoo.cli import main

main()
