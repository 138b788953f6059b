"""The version of subprobe, in one place (the package, the build and the model cards read it)."""

__version__ = "0.2.0"
