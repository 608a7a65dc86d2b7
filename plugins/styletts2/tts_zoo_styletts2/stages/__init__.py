"""StyleTTS 2: stages."""
