"""`python -m gfpose_core.cli` as add-ons of the first release start the engine: the same command as
`python -m gfpose_core` (gfpose_core.service.cli)."""
import sys

from gfpose_core.service.cli import main

if __name__ == "__main__":
    sys.exit(main())
