from calltape.cli import main

raise SystemExit(main())
