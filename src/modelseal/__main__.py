"""Allows `python -m modelseal`."""

import sys

from modelseal.cli import main

sys.exit(main())
