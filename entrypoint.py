"""The container's entry point: publish the distributions, exit with the result."""

import sys

from oidc_publish.cli import main

if __name__ == "__main__":
    sys.exit(main())
