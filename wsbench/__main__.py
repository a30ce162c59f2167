"""``python -m wsbench``: the same as the ``wsbench`` command."""

import sys

from wsbench.cli import main

sys.exit(main())
