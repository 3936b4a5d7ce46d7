"""Outgoing webhooks: subscriptions, the bodies of their events, and their delivery.

Importing this package installs the serializer the outbox builds event bodies with (see
events.py); the API (through its router) and the worker (through delivery.py) both import it.
"""

from touchline.webhooks.events import install

install()
