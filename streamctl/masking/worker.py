"""`python -m streamctl.masking.worker FD`: the masking worker process (see pool.py).

FD is the worker's end of a socket pair its parent made; the rules and key arrive over it.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from streamctl.masking.pool import serve


def main() -> None:
    """Serve masking shares on the inherited socket until the parent stops or goes away."""
    conn = Connection(int(sys.argv[1]))
    try:
        serve(conn)
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        conn.close()


if __name__ == "__main__":
    main()
