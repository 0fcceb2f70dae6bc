"""`CurateConfig`: the resolved configuration of one curate run, nesting each component's config.

Sections map 1:1 onto `configs/curate.toml` and `--set section.key=value`. The run writes it to
`OUT/config.json` and into the manifest.
"""

from __future__ import annotations

import dataclasses

from dsllm.curation.decontam.stage import DecontamConfig
from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.domains import DomainsConfig
from dsllm.curation.dropped import DroppedConfig
from dsllm.curation.extract import ExtractConfig
from dsllm.curation.filters.c4 import C4Config
from dsllm.curation.filters.fineweb import FineWebConfig
from dsllm.curation.filters.gopher import GopherQualityConfig, GopherRepetitionConfig
from dsllm.curation.filters.pii import PiiConfig
from dsllm.curation.filters.urls import UrlFilterConfig
from dsllm.curation.langid import LangidConfig
from dsllm.curation.quality import QualityModelConfig
from dsllm.curation.warc import ReadConfig

# stats.json stage names, in pipeline order (`--skip` takes these names)
PER_INPUT_STAGES = (
    "read",
    "extract",
    "decontaminate",
    "langid",
    "gopher_quality",
    "gopher_repetition",
    "c4",
    "fineweb",
    "quality_model",
    "url_filter",
    "pii",
)
GLOBAL_STAGES = ("exact_dedup", "minhash_dedup")
STAGES = PER_INPUT_STAGES + GLOBAL_STAGES
REQUIRED_STAGES = ("read", "extract")

# an old config's [remix] target or `--skip remix`: one line pointing at the new flow
REMIX_MOVED = (
    "curate no longer applies a domain mixture: it keeps every surviving document once, labelled "
    "with its domain; mix domains at training time with `dsllm mix PACKED... --output MIX "
    "--set mixture.target.DOMAIN=W` (configs/mixture.toml); the URL rules are [domains] "
    "rules / extra_rules"
)


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    shard_rows: int = 100_000  # target rows per output shard (inputs are not split across shards)
    batch_rows: int = 2_000  # rows per Arrow batch / Parquet row group write
    compression_level: int = 3  # zstd level

    def __post_init__(self):
        if self.shard_rows < 1 or self.batch_rows < 1:
            raise ValueError("output.shard_rows and output.batch_rows must be >= 1")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    crawl: str = ""  # crawl name when neither cc:CRAWL, the file name nor warcinfo tell it
    retries: int = 2  # retries of a failing input (then it is recorded as failed)
    cpus_per_task: float = 1.0
    accept_partial: bool = False  # keep the readable records of a truncated input (--accept-partial)

    def __post_init__(self):
        if self.retries < 0:
            raise ValueError("run.retries must be >= 0")


@dataclasses.dataclass(frozen=True)
class CurateConfig:
    run: RunConfig = RunConfig()
    read: ReadConfig = ReadConfig()
    extract: ExtractConfig = ExtractConfig()
    decontaminate: DecontamConfig = DecontamConfig()
    langid: LangidConfig = LangidConfig()
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    c4: C4Config = C4Config()
    fineweb: FineWebConfig = FineWebConfig()
    quality_model: QualityModelConfig = QualityModelConfig()
    url_filter: UrlFilterConfig = UrlFilterConfig()
    pii: PiiConfig = PiiConfig()
    dedup: DedupConfig = DedupConfig()
    domains: DomainsConfig = DomainsConfig()
    output: OutputConfig = OutputConfig()
    dropped: DroppedConfig = DroppedConfig()
    skip: tuple[str, ...] = ()  # stage names not to run (also set by --skip)

    def __post_init__(self):
        if "remix" in self.skip:
            raise ValueError(f"remix is not a stage any more: {REMIX_MOVED}")
        unknown = [s for s in self.skip if s not in STAGES]
        if unknown:
            raise ValueError(f"skip: unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
        required = [s for s in self.skip if s in REQUIRED_STAGES]
        if required:
            raise ValueError(f"skip: {required} cannot be skipped (every run reads and extracts)")

    def runs(self, stage: str) -> bool:
        """Whether `stage` runs (not skipped, and for quality_model: a model is configured)."""
        if stage in self.skip:
            return False
        if stage == "quality_model":
            return bool(self.quality_model.model)
        if stage == "exact_dedup":
            return self.dedup.exact
        if stage == "minhash_dedup":
            return self.dedup.minhash
        return True

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(s for s in STAGES if self.runs(s))


def load_curate_config(path: str | None, overrides: list[str] | None) -> CurateConfig:
    """The curate config: configs/curate.toml (or `path`) ← `--set` overrides; an old `[remix]`
    section (a target mixture applied during curation) is one error line pointing at `dsllm mix`."""
    from dsllm.config import CONFIG_DIR, apply_overrides, from_dict, load_toml
    from dsllm.errors import UserError

    data = apply_overrides(load_toml(path) if path is not None else load_toml(CONFIG_DIR / "curate.toml"), overrides)
    if "remix" in data:
        where = f"config {path}" if path is not None and "remix" in load_toml(path) else "--set remix..."
        raise UserError(f"{where}: [remix]: {REMIX_MOVED}")
    return from_dict(CurateConfig, data)
