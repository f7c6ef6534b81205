from chargemanager.main import main

raise SystemExit(main())
