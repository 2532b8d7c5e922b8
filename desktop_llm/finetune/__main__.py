"""``python -m desktop_llm.finetune RUN_DIR``: the training process (see ``trainer``)."""

import os
import sys

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. With another busy
# program on a 2-core machine, spinning threads made training about 5x slower (12 against
# 60 tokens/s measured); on an idle machine the speed is the same either way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from desktop_llm.finetune.trainer import main  # noqa: E402 - after the OpenMP setting

if __name__ == "__main__":
    sys.exit(main())
