"""One module per console section; each holds a router mounted under /app."""

from __future__ import annotations

from fastapi import APIRouter

from touchline.console.pages import sequences

routers: list[APIRouter] = [sequences.router]
