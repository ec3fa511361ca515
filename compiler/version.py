"""The package version and the versions of what it is built for (OPA, the embedded engine)."""

__all__ = ["OPA_VERSION", "REGORUS_VERSION", "__version__"]

__version__ = "0.1.0"
#: The OPA release the bundles, configs and tests are made for (``make opa`` installs it).
OPA_VERSION = "1.22.3"
#: The regorus crate the embedded engine (rust/) is built from; rust/Cargo.lock pins it (a test checks both agree).
REGORUS_VERSION = "0.14.1"
