"""`python -m imagegate`: serve MCP over stdio (same as the `imagegate` command)."""

from .cli import main

raise SystemExit(main())
