from dense.cli import main

raise SystemExit(main())
