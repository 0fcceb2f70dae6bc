"""Common Crawl → clean, filtered, deduplicated, remixed Parquet shards."""
