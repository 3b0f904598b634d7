"""One module per subcommand, each with ``register(app)``. Module level: typer + stdlib only."""
