"""StyleTTS 2: aligner."""
