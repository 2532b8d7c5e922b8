"""The local OpenAI-compatible server, served from the app through the engine the window uses."""
