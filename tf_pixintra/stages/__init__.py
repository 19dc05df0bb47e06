"""Pipeline stages: each reads what the previous one wrote in the run directory."""
