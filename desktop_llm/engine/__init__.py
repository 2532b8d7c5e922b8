"""The inference engine: a worker process (backends) and a Qt-free client that talks to it."""
