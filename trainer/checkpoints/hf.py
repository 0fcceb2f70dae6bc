"""Hugging Face checkpoints in: resolve, load shard by shard (export: `checkpoints.export`).

Import accepts a run folder (its latest `checkpoints/step-N`), a step folder, or a Hugging Face
model folder or S3 prefix (`config.json` + `*.safetensors` or `pytorch_model*.bin`, sharded with
an index or not). S3 safetensors checkpoints are streamed straight into the model by default
(`trainer.checkpoints.stream`: only config, index, tokenizer files land in the cache); `.bin` pickles, native
checkpoints with optimizer state, checkpoints already in the cache, and any checkpoint when
`DSLLM_CHECKPOINT_CACHE=1` (or `stream=False`) is set, are fetched into the local cache first
(`trainer.checkpoints.remote`) and loaded from there.

Memory: safetensors tensors are read with `readinto` straight into the parameters' own storage
(no mmap whose touched pages would count as a second copy, no intermediate dict), so peak memory
is one copy of the weights plus one tensor when dtypes differ. `.bin` shards are opened only with
`torch.load(weights_only=True, mmap=True)` and copied tensor by tensor; a pickle that holds
anything but a flat name → tensor mapping is refused.

DeepSeek's config quirk (the rule): the published base `config.json` files carry `bos_token_id` 1
and `eos_token_id` 2, the `transformers` LlamaConfig defaults, while the tokenizer's are 100000 /
100001. When a config says exactly 1 / 2 and the vocabulary is DeepSeek's — `vocab_size` 102400,
or a tokenizer in the folder whose `<｜begin▁of▁sentence｜>` is id 100000 — the ids are replaced
by the tokenizer's (from `generation_config.json` or the tokenizer files, default 100000 /
100001). Any other config is taken as it is. Export always writes the corrected ids.

Buffers that older `transformers` versions saved (`*.rotary_emb.inv_freq`) are recomputed, not
loaded, and dropped on export.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import integrity, remote
from dsllm.trainer.checkpoints.formats import load_bin, read_entry, read_header
from dsllm.trainer.config import ModelConfig

DEEPSEEK_VOCAB = 102400
DEEPSEEK_BOS, DEEPSEEK_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
IGNORED_KEYS = re.compile(r".*rotary_emb\.inv_freq$")


@dataclasses.dataclass(frozen=True)
class LocalCheckpoint:
    """A checkpoint on local disk, ready to load: its folder, model config and weight files."""

    path: str
    config: ModelConfig
    step: int | None
    tokens: int | None
    files: tuple[str, ...]  # weight files, in load order
    format: str  # "safetensors" | "bin" | "dcp" (a sharded checkpoint: files is its DCP folder)
    source: str = ""  # what the user named (local path or s3:// prefix)
    has_optimizer: bool = False  # optimizer.pt + trainer_state.json (our native layout)
    tokenizer: str | None = None  # the folder when it holds tokenizer.json
    notes: tuple[str, ...] = ()  # config corrections applied (DeepSeek bos/eos)
    raw_config: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    requester_pays: bool = True  # for streamed (s3://) files
    remote_shards: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # uri -> RemoteShard
    verified: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # uri -> how, after streaming
    progress: object = dataclasses.field(default=None, repr=False, compare=False)  # ProgressFn for streaming

    @property
    def streamed(self) -> bool:
        """Weights are read from S3 while loading (files are s3:// URIs), not from the cache."""
        return any(storage.is_s3(f) for f in self.files)


# ------------------------------------------------------------------------------------- resolving


def resolve_checkpoint(
    src: str,
    step: int | None = None,
    requester_pays: bool = True,
    cache: Path | None = None,
    with_optimizer: bool = True,
    progress: remote.ProgressFn | None = None,
    stream: bool | None = None,
) -> LocalCheckpoint:
    """Find the checkpoint `src` names (the latest step, or `step`), fetch it if remote (or only
    its small files when its weights will be streamed, see `should_stream`), read its config
    (quirks fixed) and check the weights' names and shapes against it."""
    src = str(src)
    local = Path(src)
    if not storage.is_remote(src) and local.is_file():
        local = local.parent
    if not storage.is_remote(src) and _is_checkpoint_dir(local):
        return _open_local(local, src, None, None)
    info = pick_checkpoint(
        remote.list_checkpoints(str(local) if not storage.is_remote(src) else src, requester_pays=requester_pays),
        src,
        step,
    )
    return open_checkpoint(info, src, requester_pays, cache, with_optimizer, progress, stream)


def pick_checkpoint(infos: list[remote.CheckpointInfo], src: str, step: int | None) -> remote.CheckpointInfo:
    """The checkpoint with `step`, else the one with the highest step (or the only one)."""
    if step is not None:
        match = [i for i in infos if i.step == step]
        if not match:
            steps = ", ".join(str(i.step) for i in infos if i.step is not None) or "none"
            raise UserError(f"{src}: no checkpoint at step {step} (steps found: {steps})")
        return match[0]
    with_step = [i for i in infos if i.step is not None]
    if with_step:
        return with_step[-1]
    if len(infos) == 1:
        return infos[0]
    raise UserError(
        f"{src}: {len(infos)} checkpoints without step numbers; name one: " + ", ".join(i.name for i in infos[:5])
    )


def open_checkpoint(
    info: remote.CheckpointInfo,
    src: str,
    requester_pays: bool = True,
    cache: Path | None = None,
    with_optimizer: bool = True,
    progress: remote.ProgressFn | None = None,
    stream: bool | None = None,
) -> LocalCheckpoint:
    """Fetch (if remote) and open one listed checkpoint; `stream` as in `should_stream`."""
    skip = None if with_optimizer else (lambda name: "optim" in name or name in remote.NON_WEIGHT_NAMES)
    if not should_stream(info, stream, with_optimizer, cache):
        folder = remote.fetch_checkpoint(info, requester_pays=requester_pays, cache=cache, skip=skip, progress=progress)
        return _open_local(folder, src, info.step, info.tokens)
    weights = {n: f.uri for n, f in zip(info.names(), info.files) if n.endswith(".safetensors")}
    folder = remote.fetch_checkpoint(
        info, requester_pays=requester_pays, cache=cache, skip=lambda n: n in weights or bool(skip and skip(n))
    )
    return _open_local(
        folder, src, info.step, info.tokens, remote_weights=weights, requester_pays=requester_pays, progress=progress
    )


def should_stream(
    info: remote.CheckpointInfo, stream: bool | None, with_optimizer: bool = True, cache: Path | None = None
) -> bool:
    """Stream the weights of an S3 checkpoint into the model instead of caching them first?

    `stream=False`, or `DSLLM_CHECKPOINT_CACHE=1` when `stream` is None, says no. Otherwise yes
    when the weights are safetensors (the header gives every tensor's byte range), the checkpoint
    is not our native layout with optimizer state (exact resume reads it from a local step
    folder) and its weights are not already in the cache (then the cached copy is used)."""
    if not storage.is_s3(info.uri) or stream is False:
        return False
    if stream is None and os.environ.get("DSLLM_CHECKPOINT_CACHE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    names = info.names()
    if "pytorch_model.bin.index.json" in names and "model.safetensors.index.json" not in names:
        return False
    weights = [(n, f) for n, f in zip(names, info.files) if n.endswith(".safetensors") and "/" not in n]
    if not weights:
        return False
    if with_optimizer and "optimizer.pt" in names and "trainer_state.json" in names:
        return False
    return not all(remote.is_cached_listing(remote.cache_path(f.uri, cache), f) for _, f in weights)


def _is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (
        (path / "config.json").exists() or any(remote._is_weight(p.name) for p in path.iterdir() if p.is_file())
    )


def _open_local(
    folder: Path,
    src: str,
    step: int | None,
    tokens: int | None,
    remote_weights: dict[str, str] | None = None,
    requester_pays: bool = True,
    progress=None,
) -> LocalCheckpoint:
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise UserError(f"{src}: no config.json next to the weights (a Hugging Face layout needs one)")
    integrity.verify_folder(folder, str(folder))  # our checkpoints' SHA256SUMS; streamed shards: S3's checksum
    raw = storage.read_json(str(cfg_path))
    if not isinstance(raw, dict):
        raise UserError(f"{cfg_path}: expected a JSON object")
    fixed, notes = fix_special_tokens(raw, folder)
    config = ModelConfig.from_hf_dict(fixed, where=str(cfg_path))
    files, fmt = weight_files(folder, src, remote_weights)
    state = folder / "trainer_state.json"
    if state.exists():
        data = storage.read_json(str(state))
        if isinstance(data, dict):
            step = data.get("step", data.get("global_step", step))
            tokens = data.get("tokens", data.get("tokens_seen", data.get("num_input_tokens_seen", tokens)))
    if step is None:
        step = remote.parse_step(folder.name)
    if tokens is None:
        tokens = remote.parse_tokens(folder.name)
    ckpt = LocalCheckpoint(
        path=str(folder),
        config=config,
        step=step,
        tokens=tokens,
        files=tuple(files),
        format=fmt,
        source=src,
        has_optimizer=(folder / "optimizer.pt").exists() and state.exists(),
        tokenizer=str(folder) if (folder / "tokenizer.json").exists() else None,
        notes=tuple(notes),
        raw_config=raw,
        requester_pays=requester_pays,
        progress=progress,
    )
    if ckpt.streamed:
        from dsllm.trainer.checkpoints import stream

        for uri in files:  # HEAD + one ranged GET of the header per shard, kept for the load
            ckpt.remote_shards[uri] = stream.open_shard(uri, requester_pays)
        check_shapes(ckpt, {n: e.shape for s in ckpt.remote_shards.values() for n, e in s.entries.items()})
    elif fmt == "safetensors":
        check_shapes(ckpt, {n: e.shape for f in files for n, e in read_header(f).items()})
    elif fmt == "dcp":
        from dsllm.trainer.checkpoints import sharded

        check_shapes(ckpt, {n: shape for n, (shape, _) in sharded.model_shapes(folder).items()})
    return ckpt


def weight_files(folder: Path, src: str, remote_weights: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The weight files of a HF folder (index first, then single files); a missing shard is an error.

    With `remote_weights` (safetensors name -> s3:// URI, weights to be streamed) the shards are
    looked up there instead of in the folder."""
    if remote_weights is not None:
        return _remote_weight_files(folder, src, remote_weights)
    from dsllm.trainer.checkpoints import sharded

    if sharded.is_sharded(folder):
        return [str(folder / sharded.DCP_DIR)], "dcp"
    for index, fmt in (("model.safetensors.index.json", "safetensors"), ("pytorch_model.bin.index.json", "bin")):
        if (folder / index).exists():
            data = storage.read_json(str(folder / index))
            wmap = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(wmap, dict) or not wmap:
                raise UserError(f"{folder / index}: no weight_map")
            shards = sorted(set(wmap.values()))
            for shard in shards:
                storage.check_relative(shard, f"{src}: {index} weight_map file")
                if "/" in shard or not (folder / shard).exists():
                    raise UserError(f"{src}: shard {shard} listed in {index} is missing")
            return [str(folder / s) for s in shards], fmt
    st = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("."))
    if st:
        return [str(p) for p in st], "safetensors"
    bins = sorted(p for p in folder.glob("pytorch_model*.bin") if not p.name.startswith("."))
    if bins:
        return [str(p) for p in bins], "bin"
    others = sorted(p.name for p in folder.iterdir() if remote._is_weight(p.name))
    if others:
        raise UserError(
            f"{src}: weights in an unsupported format ({', '.join(others[:3])}); "
            "expected *.safetensors or pytorch_model*.bin"
        )
    raise UserError(f"{src}: no weights (expected *.safetensors or pytorch_model*.bin next to config.json)")


def _remote_weight_files(folder: Path, src: str, remote_weights: dict[str, str]) -> tuple[list[str], str]:
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return [remote_weights[n] for n in sorted(remote_weights)], "safetensors"
    data = storage.read_json(str(index))
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wmap, dict) or not wmap:
        raise UserError(f"{index}: no weight_map")
    for shard in sorted(set(wmap.values())):
        storage.check_relative(shard, f"{src}: {index.name} weight_map file")
        if shard not in remote_weights:
            raise UserError(f"{src}: shard {shard} listed in {index.name} is missing")
    return [remote_weights[s] for s in sorted(set(wmap.values()))], "safetensors"


def fix_special_tokens(raw: dict, folder: Path) -> tuple[dict, list[str]]:
    """Apply the DeepSeek bos/eos rule (module docstring); returns (config dict, notes)."""
    bos, eos = raw.get("bos_token_id"), raw.get("eos_token_id")
    if (bos, eos) != (1, 2):
        return raw, []
    ids = _tokenizer_special_ids(folder)
    deepseek = raw.get("vocab_size") == DEEPSEEK_VOCAB or ids.get("bos") == 100000
    if not deepseek:
        return raw, []
    new_bos, new_eos = ids.get("bos", 100000), ids.get("eos", 100001)
    note = (
        f"config.json says bos/eos 1/2 (transformers defaults); DeepSeek's vocabulary uses "
        f"{new_bos}/{new_eos}: corrected"
    )
    return {**raw, "bos_token_id": new_bos, "eos_token_id": new_eos}, [note]


def _tokenizer_special_ids(folder: Path) -> dict:
    """bos/eos ids from generation_config.json, else tokenizer.json's DeepSeek special tokens."""
    out: dict[str, int] = {}
    gen = folder / "generation_config.json"
    if gen.exists():
        g = json.loads(gen.read_text(encoding="utf-8"))
        for k in ("bos", "eos"):
            v = g.get(f"{k}_token_id")
            if isinstance(v, int) and v not in (1, 2):
                out[k] = v
    tok = folder / "tokenizer.json"
    if tok.exists() and len(out) < 2:
        added = json.loads(tok.read_text(encoding="utf-8")).get("added_tokens", [])
        by_content = {t.get("content"): t.get("id") for t in added if isinstance(t, dict)}
        for k, content in (("bos", DEEPSEEK_BOS), ("eos", DEEPSEEK_EOS)):
            if isinstance(by_content.get(content), int):
                out.setdefault(k, by_content[content])
    return out


# ------------------------------------------------------------------------------- shapes and headers


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """LlamaForCausalLM parameter names and shapes implied by a config."""
    d, f, v, kv = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.n_kv_heads * cfg.head_dim
    out = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,), "lm_head.weight": (v, d)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out.update(
            {
                p + "self_attn.q_proj.weight": (d, d),
                p + "self_attn.k_proj.weight": (kv, d),
                p + "self_attn.v_proj.weight": (kv, d),
                p + "self_attn.o_proj.weight": (d, d),
                p + "mlp.gate_proj.weight": (f, d),
                p + "mlp.up_proj.weight": (f, d),
                p + "mlp.down_proj.weight": (d, f),
                p + "input_layernorm.weight": (d,),
                p + "post_attention_layernorm.weight": (d,),
            }
        )
    return out


def check_shapes(ckpt: LocalCheckpoint, found: dict[str, tuple[int, ...]]) -> None:
    """One clear line when the weights do not fit the config (shape, missing or extra tensors)."""
    want = expected_shapes(ckpt.config)
    c = ckpt.config
    dims = (
        f"hidden_size={c.hidden_size}, intermediate_size={c.intermediate_size}, "
        f"layers={c.num_hidden_layers}, kv_heads={c.num_key_value_heads}, vocab_size={c.vocab_size}"
    )
    for name, shape in found.items():
        if IGNORED_KEYS.match(name):
            continue
        if name not in want:
            raise UserError(
                f"{ckpt.source}: config.json does not match the weights: tensor {name} is not "
                f"part of the model the config describes ({dims})"
            )
        if tuple(shape) != want[name]:
            raise UserError(
                f"{ckpt.source}: config.json does not match the weights: {name} is "
                f"{list(shape)} but the config implies {list(want[name])} ({dims})"
            )
    missing = [n for n in want if n not in found]
    if missing:
        raise UserError(
            f"{ckpt.source}: the weights lack {len(missing)} tensor(s) the config needs (first: {missing[0]})"
        )


def load_into(model, ckpt: LocalCheckpoint, strict: bool = True) -> None:
    """Load the checkpoint's weights into `model` (LlamaForCausalLM names), one shard at a time.

    Parameters on the `meta` device are allocated here and assigned (build on meta to avoid a
    throwaway random init); others are overwritten in place. The model's dtype is kept.

    Parameters sharded on dim 0 (FSDP2 DTensors): each rank reads only the rows of its own shard
    (safetensors: just those bytes; `.bin`: those rows of the memory-mapped pickle), so no rank
    ever holds a full weight. Sharded checkpoints (DCP) are read with their own reader."""
    import torch

    targets = model.state_dict(keep_vars=True)
    if ckpt.format == "dcp":
        _load_dcp(model, ckpt, targets)
        return
    shards = _shards(targets)
    if shards and ckpt.streamed:
        raise UserError(f"{ckpt.source}: loading into a sharded model reads a fetched checkpoint (stream=False)")
    loaded: set[str] = set()
    with torch.no_grad():
        for path in ckpt.files:
            new = {}
            if shards:
                loaded |= _load_local_rows(ckpt, path, targets, shards)
            elif storage.is_s3(path):
                from dsllm.trainer.checkpoints import stream

                shard = ckpt.remote_shards.get(path) or stream.open_shard(path, ckpt.requester_pays)
                names, how = stream.load_shard(
                    shard,
                    lambda name, shape, new=new: _target(ckpt, targets, name, shape, new),
                    ckpt.requester_pays,
                    progress=ckpt.progress,
                )
                loaded |= names
                ckpt.verified[path] = how
            elif ckpt.format == "safetensors":
                entries = read_header(path)
                with open(path, "rb", buffering=0) as f:
                    for name, e in entries.items():
                        dst = _target(ckpt, targets, name, e.shape, new)
                        if dst is not None:
                            read_entry(f, e, dst)
                            loaded.add(name)
            else:
                sd = load_bin(path)
                for name, t in sd.items():
                    dst = _target(ckpt, targets, name, tuple(t.shape), new)
                    if dst is not None:
                        dst.copy_(t)
                        loaded.add(name)
                del sd
            if new:
                model.load_state_dict(new, strict=False, assign=True)
    missing = [n for n in targets if n not in loaded and not IGNORED_KEYS.match(n)]
    if strict and missing:
        raise UserError(
            f"{ckpt.source}: the weights lack {len(missing)} tensor(s) the model needs (first: {missing[0]})"
        )


def _shards(targets: dict) -> dict:
    """{name: (local tensor, first global row)} of the parameters sharded as DTensors (FSDP2)."""
    from torch.distributed.tensor import DTensor

    if not any(isinstance(t, DTensor) for t in targets.values()):
        return {}
    out = {}
    for name, t in targets.items():
        if not isinstance(t, DTensor):
            out[name] = (t.data, 0)
            continue
        from torch.distributed.tensor import Shard

        if len(t.placements) != 1 or t.placements[0] != Shard(0):
            raise UserError(f"{name}: sharded as {t.placements}; only dim-0 sharding (FSDP2) is loaded per rank")
        local = t.to_local()
        chunk = -(-t.shape[0] // t.device_mesh.size())
        out[name] = (local, min(t.device_mesh.get_local_rank() * chunk, t.shape[0]))
    return out


def _load_local_rows(ckpt, path: str, targets: dict, shards: dict) -> set[str]:
    """One weight file into this rank's shards: each tensor's rows of the local shard only."""
    import torch

    loaded = set()
    if ckpt.format == "safetensors":
        from dsllm.trainer.checkpoints.formats import read_rows

        entries = read_header(path)
        with open(path, "rb", buffering=0) as f:
            for name, e in entries.items():
                if _target(ckpt, targets, name, e.shape, {}) is None:
                    continue
                local, start = shards[name]
                if local.shape[0]:
                    dst = local if local.device.type == "cpu" else torch.empty(local.shape, dtype=local.dtype)
                    read_rows(f, e, dst, start)
                    if dst is not local:
                        local.copy_(dst)
                loaded.add(name)
        return loaded
    sd = load_bin(path)  # memory-mapped: only the rows copied below are read
    for name, t in sd.items():
        if _target(ckpt, targets, name, tuple(t.shape), {}) is None:
            continue
        local, start = shards[name]
        local.copy_(t[start : start + local.shape[0]])
        loaded.add(name)
    del sd
    return loaded


def _load_dcp(model, ckpt, targets: dict) -> None:
    """A sharded (DCP) checkpoint's weights into `model` (plain tensors, meta ones allocated)."""
    import torch

    from dsllm.trainer.checkpoints import sharded

    found = sharded.model_shapes(ckpt.path)
    dest, new = {}, {}
    for name, t in targets.items():
        if IGNORED_KEYS.match(name):
            continue
        if name not in found:
            raise UserError(f"{ckpt.source}: the weights lack tensor {name}")
        if t.is_meta:
            new[name] = dest[name] = torch.empty(t.shape, dtype=t.dtype)
        else:
            dest[name] = t.data
    with torch.no_grad():
        sharded.read_tensors(ckpt.path, dest)
    if new:
        model.load_state_dict(new, strict=False, assign=True)


def _target(ckpt, targets, name, shape, new):
    import torch

    if IGNORED_KEYS.match(name):
        return None
    if name not in targets:
        raise UserError(
            f"{ckpt.source}: config.json does not match the weights: tensor {name} is not part of the model"
        )
    t = targets[name]
    if tuple(t.shape) != tuple(shape):
        raise UserError(
            f"{ckpt.source}: config.json does not match the weights: {name} is {list(shape)} "
            f"but the model has {list(t.shape)}"
        )
    if t.is_meta:
        new[name] = torch.empty(shape, dtype=t.dtype)
        return new[name]
    return t.data


def build_model(ckpt: LocalCheckpoint, dtype=None):
    """A `Transformer` holding the checkpoint's weights, in `dtype` (None: float32).

    Built on the `meta` device (no throwaway random init, no storage); each tensor is allocated
    when its shard is read, so peak memory is one copy of the weights (bench/RESULTS-checkpoints.md)."""
    import torch

    from dsllm.trainer.model import Transformer

    with torch.device("meta"):
        model = Transformer(ckpt.config, seed=0)
    if dtype is not None:
        model.to(dtype)
    load_into(model, ckpt)
    return model.eval()
