"""The operator console: server-rendered pages under /app over the API's own services."""
