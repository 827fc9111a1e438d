from listenfd.cli import main

raise SystemExit(main())
