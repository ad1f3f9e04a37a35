"""``python -m tvscript`` (and ``torchrun -m tvscript``) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
