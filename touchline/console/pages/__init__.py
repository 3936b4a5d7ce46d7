"""One module per console section; each holds a router mounted under /app."""

from __future__ import annotations

from fastapi import APIRouter

from touchline.console.pages import contacts, enroll, jobs, messages, sequence, sequences, webhooks

routers: list[APIRouter] = [sequences.router, sequence.router]
routers += [contacts.router, enroll.router]
routers += [jobs.router, messages.router, webhooks.router]
