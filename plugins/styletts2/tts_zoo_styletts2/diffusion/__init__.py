"""StyleTTS 2: diffusion."""
