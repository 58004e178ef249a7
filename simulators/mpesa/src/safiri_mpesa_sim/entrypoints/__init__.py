"""HTTP routes: the Daraja-like API and the simulator's own admin endpoints."""
