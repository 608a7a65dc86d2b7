"""StyleTTS 2: losses."""
