"""Runtime: configuration, command line, app assembly, channel adapters, web server, outbox sender."""
