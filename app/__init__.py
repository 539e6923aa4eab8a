"""memaudit: memorization audits for machine-learning models, as a service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
