"""What users run: the `gfpose` command line, the local engine server (HTTP) and the engine-only demo."""
