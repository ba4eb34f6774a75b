"""Device-side scripts. They run on the target (or under qemu) and depend only on numpy + a runtime."""
