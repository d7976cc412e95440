"""``python -m llmwatch``: the same command line as the ``llmwatch`` script."""

import sys

from llmwatch._cli import main

if __name__ == "__main__":
    sys.exit(main())
