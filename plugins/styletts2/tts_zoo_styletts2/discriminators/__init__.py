"""StyleTTS 2: discriminators."""
