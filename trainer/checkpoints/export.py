"""Export to a Hugging Face folder (local or s3://): safetensors shards with an index, config with
DeepSeek's real special-token ids, tokenizer files, and `SHA256SUMS` (checked when the folder is
loaded again, `integrity`); tensors copied one at a time (`export_hf`), from a native or Hugging
Face checkpoint or a sharded (DCP) one (each tensor gathered from its shards as it is written)."""

from __future__ import annotations

import json
from pathlib import Path

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import integrity, remote
from dsllm.trainer.checkpoints.formats import ST_DTYPES, bytes_view, load_bin, read_entry, read_header
from dsllm.trainer.checkpoints.hf import IGNORED_KEYS, LocalCheckpoint, check_shapes, expected_shapes


def export_hf(
    ckpt: LocalCheckpoint,
    out_dir: str,
    dtype: str | None = None,
    max_shard_bytes: int = 5 << 30,
    overwrite: bool = False,
    tokenizer: str | None = None,
) -> list[str]:
    """Write `ckpt` as a Hugging Face model folder (local or s3://): safetensors shards (with an
    index when there are several), `config.json` with the corrected bos/eos, `generation_config.json`
    and the tokenizer files when the checkpoint has them. Tensors are streamed one at a time;
    without `dtype` the bytes are copied unchanged (an import → export round trip is lossless).
    Returns the files written."""
    import torch

    out_dir = str(out_dir)
    if ckpt.streamed:
        raise UserError(f"{ckpt.source}: export reads a fetched checkpoint; resolve it with stream=False")
    _check_output(ckpt, out_dir, overwrite)
    sources, keep = _export_sources(ckpt)
    check_shapes(ckpt, {n: s[1] for n, s in sources.items()})
    order = [n for n in expected_shapes(ckpt.config) if n in sources]
    out_dtype = getattr(torch, dtype) if dtype else None
    sizes = {n: _nbytes(sources[n][1], out_dtype or getattr(torch, sources[n][0])) for n in order}
    shards: list[list[str]] = [[]]
    for n in order:
        if shards[-1] and sum(sizes[m] for m in shards[-1]) + sizes[n] > max_shard_bytes:
            shards.append([])
        shards[-1].append(n)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    written, sums = [], {}
    for fname, members in zip(names, shards):
        sums[fname] = _write_shard(storage.join(out_dir, fname), members, sources, out_dtype)
        written.append(fname)
    if len(shards) > 1:
        wmap = {n: fname for fname, members in zip(names, shards) for n in members}
        storage.write_json(
            storage.join(out_dir, "model.safetensors.index.json"),
            {"metadata": {"total_size": sum(sizes.values())}, "weight_map": wmap},
        )
        written.append("model.safetensors.index.json")
    del keep
    dtype_name = dtype or sources[order[0]][0]
    written += _export_metadata(ckpt, out_dir, dtype_name)
    if "tokenizer.json" not in written:
        written += export_tokenizer(ckpt, out_dir, tokenizer)
    for name in written:  # shards were hashed while written; the rest are small files, read back
        if name not in sums:
            sums[name] = integrity.sha256_bytes(storage.read_bytes(storage.join(out_dir, name)))
    integrity.write_sums(out_dir, sums)
    return [*written, integrity.SUMS]


def run_tokenizer(ckpt: LocalCheckpoint) -> str | None:
    """The tokenizer a run of ours trained with: RUN/train_config.json names the data, whose manifest
    names the tokenizer (path and sha256). None when any link is missing or the file changed since."""
    import hashlib

    folder = Path(ckpt.path).resolve()
    for run in (folder, folder.parent, folder.parent.parent):
        record = run / "train_config.json"
        if not record.exists():
            continue
        data = json.loads(record.read_text(encoding="utf-8")).get("data")
        if not data:
            return None
        from dsllm.trainer.mixture_data import open_dataset

        try:
            info = open_dataset(data).manifest.get("tokenizer") or {}
        except UserError:
            return None
        path = info.get("path")
        if not path:
            return None
        tok = storage.join(path, "tokenizer.json") if not str(path).endswith(".json") else path
        if not storage.exists(tok) or hashlib.sha256(storage.read_bytes(tok)).hexdigest() != info.get("sha256"):
            return None
        return tok.rsplit("/", 1)[0] if storage.is_remote(tok) else str(Path(tok).parent)
    return None


def export_tokenizer(ckpt: LocalCheckpoint, out_dir: str, tokenizer: str | None) -> list[str]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json into the export, so that
    `AutoTokenizer` loads it beside the model: from `tokenizer` (a folder or tokenizer.json), else
    the one the run trained with (`run_tokenizer`). Returns the files written ([] when none is known)."""
    from dsllm.tokenizer.deepseek import tokenizer_config
    from dsllm.tokenizer.io import load_tokenizer

    source = tokenizer or run_tokenizer(ckpt)
    if not source:
        return []
    tok, info = load_tokenizer(source)
    folder = source.rsplit("/", 1)[0] if str(source).endswith(".json") else source
    storage.write_text(storage.join(out_dir, "tokenizer.json"), tok.to_str())
    cfg_uri = storage.join(folder, "tokenizer_config.json")
    if storage.exists(cfg_uri):
        config = json.loads(storage.read_text(cfg_uri))
    else:
        config = tokenizer_config(bos=info.bos_token or "", eos=info.eos_token or "")
    config["model_max_length"] = ckpt.config.max_position_embeddings
    storage.write_json(storage.join(out_dir, "tokenizer_config.json"), config)
    specials = {
        k: v
        for k, v in (("bos_token", info.bos_token), ("eos_token", info.eos_token), ("pad_token", info.eos_token))
        if v
    }
    storage.write_json(storage.join(out_dir, "special_tokens_map.json"), specials)
    return ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def _check_output(ckpt: LocalCheckpoint, out_dir: str, overwrite: bool) -> None:
    if not storage.is_s3(out_dir):
        p = Path(out_dir)
        if p.exists() and p.resolve() == Path(ckpt.path).resolve():
            raise UserError(f"{out_dir}: is the checkpoint's own folder; export to another one")
        if p.is_file():
            raise UserError(f"{out_dir}: is a file; --output needs a folder")
        if p.is_dir() and any(p.iterdir()) and not overwrite:
            raise UserError(f"{out_dir}: not empty (use --overwrite to replace a previous export)")
        if p.is_dir() and overwrite:
            for old in list(p.glob("*.safetensors")) + list(p.glob("*.index.json")):
                old.unlink()


def _nbytes(shape, dtype) -> int:
    n = dtype.itemsize
    for s in shape:
        n *= s
    return n


def _export_sources(ckpt: LocalCheckpoint):
    """name → (dtype name, shape, reader); readers write the tensor's bytes to a file object."""
    sources, keep = {}, []
    if ckpt.format == "dcp":  # a sharded checkpoint: each tensor read alone when written
        from dsllm.trainer.checkpoints import sharded

        for name, (shape, dt) in sharded.model_shapes(ckpt.path).items():
            if not IGNORED_KEYS.match(name):
                sources[name] = (str(dt).removeprefix("torch."), shape, ("dcp", ckpt.path, name))
    elif ckpt.format == "safetensors":
        for path in ckpt.files:
            for name, e in read_header(path).items():
                if not IGNORED_KEYS.match(name):
                    sources[name] = (e.dtype, e.shape, ("st", path, e))
    else:
        for path in ckpt.files:
            sd = load_bin(path)
            keep.append(sd)
            for name, t in sd.items():
                if not IGNORED_KEYS.match(name):
                    sources[name] = (str(t.dtype).removeprefix("torch."), tuple(t.shape), ("bin", path, t))
    return sources, keep


def _write_shard(uri: str, members: list[str], sources: dict, out_dtype) -> str:
    """A safetensors file written tensor by tensor (header first; format: 8-byte LE header length,
    JSON header padded to 8 bytes, raw little-endian data); returns its SHA-256, hashed as written."""
    import torch

    rev = {v: k for k, v in ST_DTYPES.items()}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for n in members:
        dt = out_dtype or getattr(torch, sources[n][0])
        size = _nbytes(sources[n][1], dt)
        header[n] = {
            "dtype": rev[str(dt).removeprefix("torch.")],
            "shape": list(sources[n][1]),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with storage.atomic_write(uri) as f:
        out = integrity.HashingWriter(f)
        out.write(len(blob).to_bytes(8, "little") + blob)
        for n in members:
            _write_tensor(out, sources[n], out_dtype)
    return out.hexdigest()


def _write_tensor(out, source, out_dtype) -> None:
    import torch

    dtype_name, shape, (kind, path, obj) = source
    same = out_dtype is None or out_dtype == getattr(torch, dtype_name)
    if kind == "st" and same:
        with open(path, "rb") as f:  # a byte-exact copy of the stored tensor
            f.seek(obj.start)
            left = obj.end - obj.start
            while left:
                chunk = f.read(min(left, 8 << 20))
                if not chunk:
                    raise UserError(f"{path}: truncated at byte {obj.end - left}")
                out.write(chunk)
                left -= len(chunk)
        return
    if kind == "st":
        t = torch.empty(shape, dtype=out_dtype)
        with open(path, "rb", buffering=0) as f:
            read_entry(f, obj, t)
    elif kind == "dcp":
        from dsllm.trainer.checkpoints import sharded

        t = torch.empty(shape, dtype=getattr(torch, dtype_name))
        sharded.read_tensors(path, {obj: t})
        t = t if same else t.to(out_dtype)
    else:
        t = obj.to(out_dtype) if not same else obj
    out.write(memoryview(bytes_view(t.contiguous())))


def _export_metadata(ckpt: LocalCheckpoint, out_dir: str, dtype_name: str) -> list[str]:
    """config.json (original extras kept, our fields and the corrected ids on top), generation
    config and tokenizer files."""
    cfg = {k: v for k, v in ckpt.raw_config.items() if k not in ("dtype", "torch_dtype", "transformers_version")}
    cfg.update(ckpt.config.to_hf_dict(torch_dtype=dtype_name))
    if isinstance(cfg.get("rope_parameters"), dict):
        cfg["rope_parameters"] = {**cfg["rope_parameters"], "rope_theta": ckpt.config.rope_theta}
    storage.write_json(storage.join(out_dir, "config.json"), cfg)
    folder = Path(ckpt.path)
    gen = {}
    if (folder / "generation_config.json").exists():
        gen = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    gen.update({"bos_token_id": ckpt.config.bos_token_id, "eos_token_id": ckpt.config.eos_token_id})
    storage.write_json(storage.join(out_dir, "generation_config.json"), gen)
    written = ["config.json", "generation_config.json"]
    for name in remote.TOKENIZER_FILES:
        if (folder / name).exists():
            storage.upload_file(str(folder / name), storage.join(out_dir, name))
            written.append(name)
    return written
