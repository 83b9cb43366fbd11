"""One module per ``mcdose`` subcommand.  Each holds only argument parsing and composition."""
