"""Scaling-law sweeps: DeepSeek LLM's method (paper §3) from sweep to prediction.

    laws.py      power laws k·C^a, the paper's fitted laws, reading a fit back as the current laws
    plan.py      the sweep planner: budgets → model shapes, tokens, η and B; shared first stages
    data.py      the held-out split no run trains on, and bits per byte on it
    execute.py   one run (or one shared first stage) end to end, with no Ray in sight
    fit.py       IsoFLOP parabolas, near-optimal bands, power laws, bootstrap intervals, predictions
    report.py    the terminal table, the JSON and the self-contained HTML page (inline SVG)

Ray lives in dsllm.jobs.scaling (one Ray task per run); the CLI is `dsllm scaling sweep|fit`.
"""
