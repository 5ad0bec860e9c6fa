"""What ``coalmine demo`` runs: a sample service, a load generator and a process supervisor."""

from coalmine.demo.faults import Fault, FaultSet, combine, parse_fault

__all__ = ["Fault", "FaultSet", "combine", "parse_fault"]
