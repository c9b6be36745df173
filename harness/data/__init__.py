"""Placeholder: implemented by the datasets issue."""
