"""``python -m mobile_lr.cli`` is the ``mobile-lr`` command."""

import sys

from mobile_lr.cli import main

if __name__ == "__main__":
    sys.exit(main())
