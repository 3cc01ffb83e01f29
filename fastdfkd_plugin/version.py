"""The package version, apart from the package's face so that modules that record it import no ``__init__``."""

__version__ = "0.2.0"
