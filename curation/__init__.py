"""Common Crawl → clean, filtered, deduplicated, domain-labelled Parquet shards.

The run reads top-down in curation.run (`run_curate`); one input's stages in curation.pipeline;
every stage follows the contract in curation.stage; tasks fan out through curation.executor."""
