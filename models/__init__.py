"""The one shared library of networks and checkpoint loaders (see docs/CONTRACTS.md)."""
