"""The gates every entry point shares: solver inputs, sparse structure, saved states."""
