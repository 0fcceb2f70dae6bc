"""Follow submitted Ray jobs: `dsllm jobs list|status|logs|stop --address URL [JOB_ID]`."""

from __future__ import annotations

import json

from dsllm import console


def add_arguments(p) -> None:
    p.add_argument("action", choices=["list", "status", "logs", "stop"])
    p.add_argument("job_id", nargs="?", help="submission id (for status, logs, stop)")
    p.add_argument("--address", required=True, help="Ray dashboard URL, e.g. http://127.0.0.1:8265")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--follow", action="store_true", help="logs: keep streaming until the job ends")


def run(args) -> int:
    from dsllm.errors import UserError
    from dsllm.jobs import submit

    if args.action != "list" and not args.job_id:
        raise UserError(f"jobs {args.action}: a JOB_ID is needed")
    if args.action == "list":
        rows = submit.list_jobs(args.address)
        if args.json:
            console.out(json.dumps(rows, indent=2))
        else:
            from rich.table import Table

            table = Table("job id", "status", "entrypoint")
            for r in rows:
                table.add_row(r["submission_id"] or "", r["status"], (r["entrypoint"] or "")[:80])
            console.stdout.print(table)
    elif args.action == "status":
        info = submit.status(args.address, args.job_id)
        console.out(
            json.dumps(info, indent=2)
            if args.json
            else f"{info['submission_id']}: {info['status']}" + (f" ({info['message']})" if info.get("message") else "")
        )
    elif args.action == "logs":
        if args.follow:
            submit.wait(args.address, args.job_id, follow=True)
        else:
            console.raw(submit.logs(args.address, args.job_id))
    elif args.action == "stop":
        stopped = submit.stop(args.address, args.job_id)
        console.out(f"{args.job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0
