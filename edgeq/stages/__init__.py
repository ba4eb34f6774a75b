"""Hardware-specific graph passes: one file each, registered by name (see registry.py)."""
