"""Batched log-likelihood of request continuations under a causal LM, shared contexts scored once.

Each request is tokenized as context tokens + continuation tokens (separately, so the continuation's
tokens are the same whatever the context; a context that ends in spaces gives them to the
continuation). Identical token sequences (repeated choices) are scored once.

Shared contexts: the requests of one context (a document's answer choices; the unconditional
"Answer:" requests of a whole task) become ONE packed row — the context, then each continuation
(all but its last token) — with a tree-shaped attention mask: a continuation's tokens see the
context and the earlier tokens of their own continuation, never a sibling's, and their RoPE
positions restart at len(context), so every continuation is scored exactly as if it followed the
context alone, while the context is run once (`tokens_forwarded` counts the difference). A row
holds at most `max_len` tokens and no more continuation tokens than context tokens (a context with
many continuations takes several rows: attention costs a row's length squared); a request
longer than the model's context keeps its last `max_len + 1` tokens, on a row of its own.
Models other than ours (a `transformers` model passed in) are scored one request per row.

Rows are sorted longest first and run in batches of similar length, right-padded; the
continuations' token log-probabilities are gathered in one vectorised step per batch: our model
computes the logits of the scored positions only (`logits_at`), and the log-softmax runs over those.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dsllm.trainer.benchmarks.tasks import Request


def encode_requests(tokenizer, requests: list[Request], bos_id: int | None) -> list[tuple[tuple[int, ...], int]]:
    """(token ids, continuation length) per request; an empty context becomes [bos_id]."""
    ctxs, conts = [], []
    for r in requests:
        ctx, cont = r.context, r.continuation
        stripped = ctx.rstrip(" ")
        cont = ctx[len(stripped) :] + cont
        ctxs.append(stripped)
        conts.append(cont)
    ctx_ids = [e.ids for e in tokenizer.encode_batch(ctxs, add_special_tokens=False)] if ctxs else []
    cont_ids = [e.ids for e in tokenizer.encode_batch(conts, add_special_tokens=False)] if conts else []
    out = []
    for c, k in zip(ctx_ids, cont_ids):
        if not c:
            c = [bos_id if bos_id is not None else 0]
        out.append((tuple(c) + tuple(k), len(k)))
    return out


@dataclasses.dataclass
class ScoreStats:
    """What scoring cost: unique requests scored, packed rows, forward passes, real tokens forwarded
    (padding excluded), and the tokens one-request-per-row scoring forwards for the same requests."""

    requests: int = 0
    rows: int = 0
    forward_passes: int = 0
    tokens_forwarded: int = 0
    tokens_per_request: int = 0

    def add(self, other: ScoreStats) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Row:
    """One packed row: a context, then continuations (key index, tokens), each scored on its own."""

    context: tuple[int, ...]
    branches: list[tuple[int, tuple[int, ...]]]

    @property
    def length(self) -> int:  # input tokens: the context and every continuation but its last token
        return len(self.context) + sum(len(k) - 1 for _, k in self.branches)


def plan_rows(keys: list[tuple[tuple[int, ...], int]], max_len: int, share_contexts: bool) -> list[_Row]:
    """Packed rows scoring every (ids, n_cont) of `keys` (unique), at most `max_len` input tokens each."""
    rows: list[_Row] = []
    groups: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
    for i, (ids, n_cont) in enumerate(keys):
        if n_cont == 0:
            continue  # nothing to score: log-likelihood 0
        ctx, cont = ids[: len(ids) - n_cont], ids[len(ids) - n_cont :]
        if len(ids) - 1 > max_len:  # keep the last max_len + 1 tokens (the first may be context)
            ids = ids[-(max_len + 1) :]
            cut = max(1, len(ids) - n_cont)
            rows.append(_Row(ids[:cut], [(i, ids[cut:])]))
        elif share_contexts:
            groups.setdefault(ctx, []).append((i, cont))
        else:
            rows.append(_Row(ctx, [(i, cont)]))
    for ctx, branches in groups.items():
        # at most as many continuation tokens as context tokens per row: attention over a row costs
        # its length squared, so many continuations of a short context ("Answer:") gain nothing from
        # one long row, while a few-shot prompt is shared by all its choices
        cap = min(max_len, 2 * len(ctx))
        row = _Row(ctx, [])
        for b in branches:
            if row.branches and row.length + len(b[1]) - 1 > cap:
                rows.append(row)
                row = _Row(ctx, [])
            row.branches.append(b)
        rows.append(row)
    return rows


def accepts_tree_mask(model) -> bool:
    """Our Transformer (plain, fused, DDP-unwrapped or FSDP-sharded) takes `attn_mask` + `positions`."""
    from dsllm.trainer.model import Transformer

    return isinstance(model, Transformer)


def score_sequences(
    model,
    seqs: list[tuple[tuple[int, ...], int]],
    max_len: int,
    batch_tokens: int = 8192,
    device=None,
    share_contexts: bool = True,
    stats: ScoreStats | None = None,
) -> np.ndarray:
    """Sum of log P(continuation tokens | prefix) for each (ids, n_cont); identical inputs scored once,
    requests sharing a context in one row (`share_contexts`, for our Transformer). `stats` (when
    given) accumulates what the scoring cost."""
    import torch

    unique = {s: i for i, s in enumerate(dict.fromkeys(seqs))}
    keys = list(unique)
    rows = plan_rows(keys, max_len, share_contexts and accepts_tree_mask(model))
    lengths = np.array([r.length for r in rows], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    result = np.zeros(len(keys), dtype=np.float64)
    st = ScoreStats(
        requests=len(keys),
        rows=len(rows),
        tokens_forwarded=int(lengths.sum()),
        tokens_per_request=sum(min(len(ids), max_len + 1) - 1 for ids, n in keys if n > 0),
    )
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        lo = 0
        while lo < len(order):
            width = max(int(lengths[order[lo]]), 1)
            n = max(1, batch_tokens // width)
            batch = [rows[i] for i in order[lo : lo + n]]
            lo += len(batch)
            idx, ll = _score_batch(model, batch, width, device)
            np.add.at(result, idx, ll)
            st.forward_passes += 1
    model.train(was_training)
    if stats is not None:
        stats.add(st)
    return result[[unique[s] for s in seqs]]


def _score_batch(model, rows: list[_Row], width: int, device) -> tuple[np.ndarray, np.ndarray]:
    """One right-padded forward pass of packed rows; (key index, log-prob) per continuation token."""
    import torch

    B = len(rows)
    x = np.zeros((B, width), dtype=np.int64)
    pos = np.zeros((B, width), dtype=np.int64)
    seg = np.full((B, width), -1, dtype=np.int64)  # -1 padding, 0 context, b + 1 continuation b
    g_row, g_pos, g_tok, g_key = [], [], [], []
    for r, row in enumerate(rows):  # one entry per row and per continuation, never per token
        c = len(row.context)
        x[r, :c], pos[r, :c], seg[r, :c] = row.context, np.arange(c), 0
        at = c
        for b, (key, cont) in enumerate(row.branches):
            m = len(cont)
            x[r, at : at + m - 1] = cont[:-1]
            pos[r, at : at + m - 1] = c + np.arange(m - 1)  # RoPE restarts after the context
            seg[r, at : at + m - 1] = b + 1
            # token j of the continuation is predicted at the context's last position (j = 0),
            # else at the continuation's own token j - 1
            g_pos.append(np.concatenate(([c - 1], at + np.arange(m - 1))))
            g_row.append(np.full(m, r))
            g_tok.append(np.asarray(cont))
            g_key.append(np.full(m, key))
            at += m - 1
    rr = torch.from_numpy(np.concatenate(g_row)).to(device)
    pp = torch.from_numpy(np.concatenate(g_pos)).to(device)
    tt = torch.from_numpy(np.concatenate(g_tok).astype(np.int64)).to(device)
    ids = torch.from_numpy(x).to(device)
    if not accepts_tree_mask(model):  # a transformers model: one request per row, every position's logits
        logits = _logits(model(ids))[rr, pp]
    elif any(len(row.branches) > 1 for row in rows):  # causal, a continuation never sees another
        s = torch.from_numpy(seg).to(device)
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        see = (s[:, :, None] == s[:, None, :]) | ((s[:, None, :] == 0) & (s[:, :, None] > 0))
        mask = (see & causal)[:, None]  # (B, 1, T, T), True = may attend
        logits = model(ids, positions=torch.from_numpy(pos).to(device), attn_mask=mask, logits_at=rr * width + pp)
    else:  # every row one context and one continuation: plain causal attention
        logits = model(ids, logits_at=rr * width + pp)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tt[:, None])[:, 0]
    return np.concatenate(g_key), logp.double().cpu().numpy()


def _logits(out):
    """Our Transformer returns logits; a transformers model returns an output object."""
    return getattr(out, "logits", out)
