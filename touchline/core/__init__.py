"""The rules of sequences, free of the API and the worker: schedules and send windows,
statuses and their transitions, a sequence's settings, and the state changes of step
contacts and runs that both the API and the worker make."""
