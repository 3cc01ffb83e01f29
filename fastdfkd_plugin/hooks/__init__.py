"""The plugin machinery at the bottom of the house: the hook specifications, the plugin manager, and the value types of plugins' command-line options."""
