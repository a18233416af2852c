"""`python -m pipelines ...` is the `triplet-builder` command."""

import sys

from pipelines.cli import main

sys.exit(main())
