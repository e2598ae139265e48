"""``python -m evaluation ...``: the same as ``medrag evaluate ...``."""

import sys

from evaluation.cli import main

sys.exit(main())
