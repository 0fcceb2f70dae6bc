"""Common Crawl → clean, filtered, deduplicated, remixed Parquet shards.

The run reads top-down in curation.run (`run_curate`); one input's stages in curation.pipeline;
every stage follows the contract in curation.stage; tasks fan out through curation.executor."""
