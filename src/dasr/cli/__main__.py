"""``python -m dasr.cli``: the ``dasr`` command."""

import sys

from dasr.cli import main

sys.exit(main())
