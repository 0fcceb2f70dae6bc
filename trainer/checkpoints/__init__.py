"""Checkpoint I/O as one component: native save/resume (`native`), Hugging Face formats (`hf`),
S3 listing and verified ranged reads (`remote`), streaming import (`stream`), run mirroring (`mirror`)."""
