"""``python -m pytest_aienergyscore ...`` runs the ``aienergyscore`` command."""

from .cli import main

raise SystemExit(main())
