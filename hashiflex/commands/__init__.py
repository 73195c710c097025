"""Subcommands of the `hashiflex` CLI: each module's run(args) returns (result dict, summary text)."""
