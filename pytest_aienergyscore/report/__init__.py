"""Reporting helpers: turning measured energy into AI Energy Score results."""
