"""``python -m finetune ...``: the same as ``medrag finetune ...``."""

import sys

from finetune.cli import main

sys.exit(main())
