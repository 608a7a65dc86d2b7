"""StyleTTS 2: pitch."""
