"""Our own web endpoint: the app and its handlers, the connection-guarding server, web config."""
