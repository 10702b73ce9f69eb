"""Build settings that pyproject.toml cannot hold: two small C extensions.

- streamctl.kafka._records_c, the record codec's hot loops;
- streamctl.transcript._digests_c, per-record SHA-256 (OpenSSL's, found through hashlib).

Both are required at build time (a failed compile fails `pip install`, loudly); streamctl
still runs without them, on the pure-Python reference code (streamctl/kafka/records.py,
streamctl/transcript/digests.py), when a module is absent or STREAMCTL_PURE_PYTHON=1.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamctl.kafka._records_c",
            sources=["streamctl/kafka/_records_c.c"],
            optional=False,
        ),
        Extension(
            "streamctl.transcript._digests_c",
            sources=["streamctl/transcript/_digests_c.c"],
            libraries=["dl"],  # dlopen/dlsym (part of libc itself on recent glibc)
            optional=False,
        ),
    ]
)
