from metercert.cli import main

raise SystemExit(main())
