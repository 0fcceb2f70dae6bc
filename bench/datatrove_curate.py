"""datatrove's own curate pipeline over a folder of .warc.gz, for bench/bench_curate_e2e.py.

Runs in a separate venv with datatrove (`pip install 'datatrove[processing]' warcio faust-cchardet
python-magic pyarrow`): WarcReader → Trafilatura → LanguageFilter(en, zh; lid.176) →
GopherRepetitionFilter → GopherQualityFilter → C4QualityFilter → FineWebQualityFilter →
ParquetWriter, datatrove's defaults, one task per WARC over `--workers` processes
(LocalPipelineExecutor). The lid.176 model is dsllm's shipped `lid.176.ftz`, loaded by datatrove's
FT176LID in place of its download (this machine has no internet; datatrove would fetch `lid.176.bin`).

    python bench/datatrove_curate.py INPUT_DIR OUT_DIR --lid LID176_FTZ [--workers 2]

Prints one JSON line: wall seconds, CPU seconds of this process and its children, documents kept.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("inputs")
    ap.add_argument("out")
    ap.add_argument("--lid", required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    w0 = time.perf_counter()

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.lid import FT176LID
    from fasttext.FastText import _FastText

    def model(self):  # datatrove's own loader, minus the download (no internet here)
        if self._model is None:
            self._model = _FastText(args.lid)
        return self._model

    FT176LID.model = property(model)

    n_files = len(glob.glob(os.path.join(args.inputs, "*.warc.gz")))
    executor = LocalPipelineExecutor(
        pipeline=[
            WarcReader(args.inputs, glob_pattern="*.warc.gz"),
            Trafilatura(favour_precision=True, timeout=60),
            LanguageFilter(languages=["en", "zh"]),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(),
            FineWebQualityFilter(),
            ParquetWriter(os.path.join(args.out, "data")),
        ],
        tasks=n_files,
        workers=args.workers,
        logging_dir=os.path.join(args.out, "logs"),
        start_method="fork",  # workers inherit the patched model loader (default: forkserver)
    )
    executor.run()
    kept = 0
    import pyarrow.parquet as pq

    for f in glob.glob(os.path.join(args.out, "data", "*.parquet")):
        kept += pq.read_metadata(f).num_rows
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps({"wall_s": time.perf_counter() - w0, "cpu_s": cpu, "kept": kept, "tasks": n_files}))


if __name__ == "__main__":
    main()
