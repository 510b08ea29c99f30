"""pytest plugin: fixtures and options for hardware-in-the-loop tests."""
