"""``python -m desktop_llm.engine``: the engine worker process."""

from desktop_llm.engine.worker import main

if __name__ == "__main__":
    main()
