"""`python -m edgeclip.cli` (and `torchrun ... -m edgeclip.cli train`) is the `edgeclip` command."""

import sys

from edgeclip.cli import main

sys.exit(main())
