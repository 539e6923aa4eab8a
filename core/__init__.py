"""What the API and the worker both stand on, importing neither: storage (ORM models,
sessions), settings, path guards, the submit-time inspection of models and datasets, audit
submission, verdicts and policies, and the interface every check kind declares."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
