"""The ingestion pipeline: bounded queue, batcher, worker, retry and disk spool."""
