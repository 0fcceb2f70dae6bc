"""Common Crawl → clean, filtered, deduplicated, domain-labelled Parquet shards."""
