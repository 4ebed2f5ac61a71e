"""Build of the optional native AES-GCM helper; everything else is in pyproject.toml.

``metercert.security._gcm_native`` is a small C extension on OpenSSL's libcrypto (Debian:
``gcc`` and ``libssl-dev``). It is optional: where it cannot be built (no compiler, no
OpenSSL headers) the install still succeeds and ``ApduCipher`` runs its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "metercert.security._gcm_native",
            sources=["src/metercert/security/_gcm_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ],
)
