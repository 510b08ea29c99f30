"""Host side of modembridge: drive SIM7600 and EC20 modules over AT commands."""

__version__ = "0.1.0"
