"""The package's console scripts (``jacobinerf-*``), one module each; each ``entrypoint`` parses with tyro."""
