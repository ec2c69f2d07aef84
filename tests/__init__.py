"""Tests of pytest-aienergyscore (a package so that helpers such as tiny_models import cleanly)."""
