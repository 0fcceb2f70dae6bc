"""Submit curate / tokenizer / pack / mix / train as a Ray job to a cluster.

    dsllm submit curate --address http://HOST:8265 --wait -- cc:CC-MAIN-2024-10 --output s3://b/run1

The project is shipped as the job's working_dir; S3 endpoint and credentials from your environment
(AWS_*, DSLLM_*) travel inside that package, never in the dashboard. Prints the job id.
"""

from __future__ import annotations

from dsllm import console


def add_arguments(p) -> None:
    p.add_argument(
        "job", choices=["curate", "tokenizer", "pack", "mix", "train"], help="the command to run on the cluster"
    )
    p.add_argument("--address", required=True, help="Ray dashboard URL, e.g. http://127.0.0.1:8265")
    p.add_argument("--wait", action="store_true", help="wait until the job finishes; exit 0 only if it succeeded")
    p.add_argument("--follow", action="store_true", help="stream the job's logs while waiting (implies --wait)")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.add_argument(
        "--pip",
        action="append",
        default=[],
        metavar="REQ",
        help="extra pip requirement installed in the job's runtime env (repeatable)",
    )
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs reserved for the driver")
    p.add_argument("--submission-id", default=None, help="choose the job id (default: generated)")
    p.add_argument("args", nargs="*", help="arguments of the command, after --")


def run(args) -> int:
    from dsllm.jobs import submit

    job_id = submit.submit(
        args.job, args.args, args.address, pip=args.pip, num_cpus=args.num_cpus, submission_id=args.submission_id
    )
    console.out(job_id)
    if args.wait or args.follow:
        status = submit.wait(args.address, job_id, follow=args.follow, timeout=args.timeout)
        console.note(f"job {job_id}: {status}")
        return 0 if status == "SUCCEEDED" else 1
    return 0
