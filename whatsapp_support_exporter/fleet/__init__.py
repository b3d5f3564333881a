"""The fleet: configuration file and target files, reload, sharding, and the poller."""
