"""The job store: every job's state in Redis, which the API, the workers and the sweeper share.

``worker.store.jobs.JobStore`` is the one entry; ``keyspace`` names every Redis key and ``lua``
holds the atomic scripts.
"""
