"""The Hugging Face Hub: search, model files and quantizations, downloads, the token (no Qt, no torch)."""
