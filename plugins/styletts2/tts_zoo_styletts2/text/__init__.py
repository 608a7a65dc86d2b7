"""StyleTTS 2: text."""
