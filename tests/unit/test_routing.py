"""Write sessions commit inside the endpoint's call, before its answer is made, whether the
endpoint takes the session itself or through a dependency that holds it (the console's
Visit)."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which
# name classes local to _app.
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_serializer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from touchline.routing import UNIT_OF_WORK, HoldsSession, api_router


class Holder(HoldsSession):
    def __init__(self, session: Session) -> None:
        self.session = session


def _app(engine: Engine, seen: list[int]) -> FastAPI:
    factory = sessionmaker(engine)

    def write_session() -> Iterator[Session]:
        # Never commits by itself: only the route's unit of work can.
        with factory() as session:
            session.info[UNIT_OF_WORK] = True
            yield session

    def holder(session: Annotated[Session, Depends(write_session)]) -> Holder:
        return Holder(session)

    class Answer(BaseModel):
        rows: int

        @field_serializer("rows")
        def _count_committed(self, rows: int) -> int:
            # What another connection sees while the answer is being made.
            with engine.connect() as connection:
                seen.append(connection.execute(text("SELECT count(*) FROM t")).scalar_one())
            return rows

    router = api_router()

    @router.post("/direct")
    def direct(session: Annotated[Session, Depends(write_session)]) -> Answer:
        session.execute(text("INSERT INTO t VALUES (1)"))
        return Answer(rows=1)

    @router.post("/held")
    def held(holder: Annotated[Holder, Depends(holder)]) -> Answer:
        holder.session.execute(text("INSERT INTO t VALUES (1)"))
        return Answer(rows=1)

    app = FastAPI()
    app.include_router(router)
    return app


def test_a_write_session_commits_before_the_answer_whoever_brings_it(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'routing.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    seen: list[int] = []
    client = TestClient(_app(engine, seen))

    assert client.post("/direct").status_code == 200
    assert client.post("/held").status_code == 200

    assert seen == [1, 2]
