"""StyleTTS 2: decoders."""
