"""The relay that 4G cards connect to: routes messages between cards by name."""

__version__ = "0.1.0"
