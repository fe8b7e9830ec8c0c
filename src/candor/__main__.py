from candor.cli import main

raise SystemExit(main())
