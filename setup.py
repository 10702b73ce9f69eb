"""Build settings that pyproject.toml cannot hold: the optional-at-runtime C record codec.

streamctl.kafka._records_c runs the record codec's hot loops and the per-record digests of
transcripts (with OpenSSL's SHA-256, found at run time through hashlib, hence libdl). It is
required at build time (a failed compile fails `pip install`, loudly); streamctl still runs
without it, on the pure-Python reference code (streamctl/kafka/records.py,
streamctl/transcript/digests.py), when the module is absent or STREAMCTL_PURE_PYTHON=1.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamctl.kafka._records_c",
            sources=["streamctl/kafka/_records_c.c"],
            libraries=["dl"],  # dlopen/dlsym (part of libc itself on recent glibc)
            optional=False,
        ),
    ]
)
