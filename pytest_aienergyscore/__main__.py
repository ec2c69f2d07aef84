"""``python -m pytest_aienergyscore ...`` runs the ``aienergyscore`` command."""

from pytest_aienergyscore.cli.main import main

raise SystemExit(main())
