"""The worker's agents: ingest (access logs -> re-keyed batches) and profiles (detection)."""
