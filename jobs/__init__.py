"""The command line, Ray runners and job submission: the only package that knows about Ray
clusters and argument parsing."""
