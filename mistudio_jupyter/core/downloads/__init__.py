"""Downloads: resumable, verified, cancellable fetches into the Hugging Face cache, one child process per job.

`manager` starts and controls the jobs, `worker` is the child process of one job, `engine` the transfer
itself. The package imports none of them, so that a worker starts without the catalog's database layer.
"""
