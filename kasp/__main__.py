"""``python -m kasp`` (also ``accelerate launch -m kasp``) runs the CLI."""

import sys

from kasp.cli import main

sys.exit(main())
