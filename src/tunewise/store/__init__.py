"""Everything written to disk: run folders and their registry, prediction files, the answer cache, atomic
writes. Knows nothing about models or tasks."""
