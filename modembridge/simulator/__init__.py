"""Simulated SIM7600 and EC20 modules on pseudo-terminals, with real TCP behind them."""

from modembridge.simulator.modem import SimConfig, SimulatedModem
from modembridge.simulator.violations import Violation, ViolationKind

__all__ = ["SimConfig", "SimulatedModem", "Violation", "ViolationKind"]
