"""The one-line configuration error every check in :mod:`analysis` raises (numpy-free)."""

try:  # the project's shared error type, so `scaling` callers catch one class
    from scaling.config import ConfigError
except ImportError:  # pragma: no cover - analysis also works without the scaling package
    class ConfigError(ValueError):
        """A bad input; the message names the field and the fix."""

__all__ = ["ConfigError"]
