"""Safiri's contracts as code (filled in by the contracts work)."""
