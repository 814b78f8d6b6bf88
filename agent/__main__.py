"""`python -m agent`: the same entry point as the `literal-agent` console script."""

from agent._cli import main

raise SystemExit(main())
