"""Outgoing webhooks: subscriptions, the events they receive, and their delivery.

Importing this package installs the session hook that queues events (see events.py); the
API (through its router) and the worker (through delivery.py) both import it.
"""

from touchline.webhooks.events import install

install()
