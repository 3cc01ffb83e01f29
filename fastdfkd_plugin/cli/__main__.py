"""``python -m fastdfkd_plugin.cli`` (what torchrun runs): the ``fastdfkd`` command."""

import sys

from .main import main

sys.exit(main())
