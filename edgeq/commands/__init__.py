"""One module per ``edgeq`` subcommand: ``register(subparsers)`` adds it, ``args.func(args)`` runs it."""
