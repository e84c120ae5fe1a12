"""The admin side of scanroute: API, migrations, workers and the CLI."""
