"""Small utilities every folder shares: strict YAML configs, atomic writes, logging, repo paths."""
