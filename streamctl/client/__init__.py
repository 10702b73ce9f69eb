"""Talking to the access server: the HTTP API client, device login, tokens and their storage."""
