"""Remote model providers: OpenAI-compatible endpoints (vLLM, llama.cpp's server, Ollama, hosted APIs).

Qt-free. ``providers`` keeps the list (no keys), ``keys`` the API keys in the OS keyring, ``client``
talks to an endpoint with the local engine client's interface, ``params`` maps sampling settings
to request fields and ``sse`` parses the streamed replies.
"""
