"""The ``fastdfkd`` command line: the core commands and the options every command (the adapters' too) shares."""
