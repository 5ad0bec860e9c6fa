"""Loading and validation of every user file (rollouts, analysis templates, coalmine.yaml)."""
