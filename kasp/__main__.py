"""``python -m kasp`` (also ``accelerate launch -m kasp``) runs the CLI."""

import sys

from kasp.cli import main

if __name__ == "__main__":  # not when a spawned process (kasp sweep --jobs) imports this module
    sys.exit(main())
