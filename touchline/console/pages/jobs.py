"""Jobs: the list, one job's progress while it runs, then its per-input outcomes."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response

from touchline.console.render import Listing
from touchline.console.visit import Viewing
from touchline.enrollment import service
from touchline.enrollment.schemas import JobSummary, Outcome
from touchline.imports.service import outcomes_csv
from touchline.models import Job
from touchline.routing import api_router
from touchline.schemas import Page, Pagination

router = api_router()

FINISHED = ("done", "failed")


class OutcomeQuery(Pagination):
    outcome: Outcome | None = None


@router.get("/jobs")
def jobs(visit: Viewing, query: Annotated[Pagination, Query()]) -> Response:
    found = service.list_jobs(visit.session, visit.org, query)
    return visit.page("jobs.html", listing=Listing.of(found, query))


@router.get("/jobs/{job_id}")
def job(visit: Viewing, job_id: uuid.UUID, query: Annotated[OutcomeQuery, Query()]) -> Response:
    found = service.get_job(visit.session, visit.org, job_id)
    return visit.page(
        "job.html",
        job=JobSummary.model_validate(found),
        finished=found.status in FINISHED,
        **_outcomes(found, query),
    )


@router.get("/jobs/{job_id}/progress")
def job_progress(visit: Viewing, job_id: uuid.UUID) -> Response:
    """The progress section alone, polled by the job page while the job runs. Once it has
    finished, the outcomes come along, to take the place of the page's empty section."""
    summary = service.job_summary(visit.session, visit.org, job_id)
    finished = summary.status in FINISHED
    outcomes: dict[str, Any] = {}
    if finished:
        found = service.get_job(visit.session, visit.org, job_id)
        outcomes = _outcomes(found, OutcomeQuery())
    return visit.page("job_progress.html", job=summary, finished=finished, **outcomes)


@router.get("/jobs/{job_id}/outcomes.csv")
def job_outcomes_csv(visit: Viewing, job_id: uuid.UUID) -> Response:
    found = service.get_job(visit.session, visit.org, job_id)
    return Response(
        outcomes_csv(found),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="job-{found.id}-outcomes.csv"'},
    )


def _outcomes(job: Job, query: OutcomeQuery) -> dict[str, Any]:
    """The counts per outcome and one page of the results (of one outcome, if asked):
    a job can hold 100,000 results, and a page shows `limit` of them."""
    results: list[dict[str, Any]] = job.results
    counts = Counter(r["outcome"] for r in results)
    if query.outcome is not None:
        results = [r for r in results if r["outcome"] == query.outcome]
    return {
        "counts": sorted(counts.items(), key=lambda item: (-item[1], item[0])),
        "listing": Listing.of(
            Page(data=results[query.offset : query.offset + query.limit], total=len(results)),
            query,
        ),
    }
