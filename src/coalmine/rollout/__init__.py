"""The controller: the rollout state machine (pure), and the loop that drives it (I/O)."""
