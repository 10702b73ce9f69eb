"""The `streamctl` command line: Typer commands and Rich rendering only."""
