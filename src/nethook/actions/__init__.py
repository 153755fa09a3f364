"""Actions a rule can run (a plugin family: interface and registry in base.py)."""
