"""Entry point of the frozen app: the same dispatcher as the installed ``prunelab`` command."""

import sys

from guiapp.launcher import main

if __name__ == "__main__":
    sys.exit(main())
