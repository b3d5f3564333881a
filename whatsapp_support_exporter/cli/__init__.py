"""The command line: settings (flags, variables, messages), the check command and main."""
