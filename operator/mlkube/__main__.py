"""Allows ``python -m mlkube``, the same as the ``mlkube`` console script."""

from mlkube.cli import main

raise SystemExit(main())
