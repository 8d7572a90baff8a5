"""Property-based fuzzing (hypothesis) of the payload parsers, the bridge and the config loader."""
