"""textgen: character-level Chinese text generation with LSTM/GRU language models."""

__version__ = "0.1.0"
