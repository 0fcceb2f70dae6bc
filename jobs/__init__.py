"""The command line, the Ray executor (jobs.runner) and job submission: the only package that knows
about Ray clusters and argument parsing. The flows themselves live with their components
(curation.run, tokenizer.pack, trainer.train)."""
