"""A signed-in operator's request, as every console page takes it: the request, who asks,
and the database session the page reads (or writes) with."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from touchline.console import render
from touchline.console.session import Checked, Operator, SignedIn
from touchline.deps import DbSession, ReadSession
from touchline.routing import HoldsSession


@dataclass(frozen=True)
class Visit(HoldsSession):
    request: Request
    operator: Operator
    # The request's own session (FastAPI makes a dependency once a request): for a post,
    # the unit of work that routing commits in the page's call.
    session: Session

    @property
    def org(self) -> uuid.UUID:
        return self.operator.organization_id

    def page(self, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
        return render.page(
            self.request, template, self.operator, status_code=status_code, **context
        )


# Async: they only bring together what other dependencies made, with no trip to a thread.
async def _viewing(request: Request, operator: SignedIn, session: ReadSession) -> Visit:
    return Visit(request, operator, session)


async def _posting(request: Request, operator: Checked, session: DbSession) -> Visit:
    return Visit(request, operator, session)


async def _previewing(request: Request, operator: Checked, session: ReadSession) -> Visit:
    return Visit(request, operator, session)


# Pages that only read take Viewing; every post takes Posting: its CSRF token checked, its
# session the request's unit of work. A post that writes nothing (a preview) takes
# Previewing, checked the same, on a read session that takes no write lock.
Viewing = Annotated[Visit, Depends(_viewing)]
Posting = Annotated[Visit, Depends(_posting)]
Previewing = Annotated[Visit, Depends(_previewing)]
