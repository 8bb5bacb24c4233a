"""`python -m robustresnet` is `rrn`."""

from .cli import main

raise SystemExit(main())
