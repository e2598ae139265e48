"""``python -m medrag`` runs the ``medrag`` command."""

import sys

from medrag.cli import main

sys.exit(main())
