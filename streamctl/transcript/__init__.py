"""Session transcripts: hash-chained event log of a tunnel session, spooled, sealed, uploaded.

Sans-I/O apart from the local spool file: no sockets, no HTTP, no printing. Uploading
takes a transport callable so the HTTP client stays in `streamctl.client`.
"""
