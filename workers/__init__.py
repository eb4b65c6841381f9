"""The worker process: arq runs the jobs in `workers.jobs`; `quarry worker` starts it."""
