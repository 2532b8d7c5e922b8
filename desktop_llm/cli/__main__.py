"""``python -m desktop_llm.cli``: the same as the ``desktop-llm`` command."""

import sys

from desktop_llm.cli import main

sys.exit(main())
