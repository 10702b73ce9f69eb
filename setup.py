"""Build settings that pyproject.toml cannot hold: the optional-at-runtime C record codec.

The extension is required at build time (a failed compile fails `pip install`, loudly);
streamctl still runs without it, on the pure-Python reference code in
streamctl/kafka/records.py, when the module is absent or STREAMCTL_PURE_PYTHON=1.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamctl.kafka._records_c",
            sources=["streamctl/kafka/_records_c.c"],
            optional=False,
        )
    ]
)
