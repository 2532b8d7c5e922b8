"""desktop_llm: run, explore and fine-tune language models on your own machine."""

__version__ = "0.1.0"
