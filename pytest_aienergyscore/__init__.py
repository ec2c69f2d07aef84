"""pytest-aienergyscore: measure AI model inference energy the AI Energy Score way, from pytest."""

__version__ = "0.1.0"
