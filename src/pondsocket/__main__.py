"""``python -m pondsocket``: the ``pondsocket`` command."""

from pondsocket.cli import main

raise SystemExit(main())
