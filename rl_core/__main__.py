"""`python -m rl_core` runs the command-line interface."""

import sys

from rl_core.run.cli import main

sys.exit(main())
