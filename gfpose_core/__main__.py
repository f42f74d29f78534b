"""`python -m gfpose_core ...` is the `gfpose` command (the add-on starts the engine this way)."""
import sys

from gfpose_core.service.cli import main

sys.exit(main())
