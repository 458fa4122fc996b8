"""``python -m i24net``: the same as the ``i24net`` command."""

from i24net.cli import main

raise SystemExit(main())
