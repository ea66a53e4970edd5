"""pytest-punie."""
