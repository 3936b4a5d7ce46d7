"""Touchline's benchmarks and their data generator. Results: docs/benchmarks.md.

One command per benchmark; each prints Markdown tables of medians over repeats, with the
baseline it is compared with measured in the same run (the machine may be shared and
noisy, so only same-run ratios mean much):

    .venv/bin/python -m bench.generate --engine both --step-contacts 1000000 --check
    .venv/bin/python -m bench.list_contact_sequences --engine both --size 1000000 [--profile]
    .venv/bin/python -m bench.worker_throughput --engine both --size 1000000 [--profile]
    .venv/bin/python -m bench.enrollment --engine both --size 1000000
    .venv/bin/python -m bench.scaling --engine both --sizes 10000 100000 1000000

Every command takes `--engine sqlite|postgresql|both` and `--postgres-url URL`: an existing
PostgreSQL server to create `bench_*` databases in (generated datasets are kept there as
templates and reused; `bench.generate --drop-cached` removes them). Without it a throwaway
server is started for the run (tests/postgres.py, fsync off) and the dataset is generated
on it each time. SQLite datasets are kept under $TOUCHLINE_BENCH_DIR (/tmp/touchline-bench).
The 10^6 dataset takes about 70 s on SQLite and 90 s on PostgreSQL to generate.

Modules:
- generate: the organization (bulk SQL: executemany on SQLite, COPY on PostgreSQL);
  checks: the invariants it keeps and a check of List Contact Sequences against the app.
- list_contact_sequences: the real server vs a minimal ASGI handler (minimal_app) vs the
  statement through the raw driver; load: the closed-loop HTTP load generator.
- worker_throughput: `touchline worker` processes vs the SQL-only floor (floor_sql).
- enrollment: 4,000 contacts per request through the API and a worker.
- scaling: the two headline measurements from 10^4 to 10^6 step contacts.
- profiling: py-spy profiles (`.venv/bin/pip install py-spy`) summarized as text.
"""
