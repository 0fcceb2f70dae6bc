"""Batched log-likelihood of request continuations under a causal LM.

Each request is tokenized as context tokens + continuation tokens (separately, so the continuation's
tokens are the same whatever the context; a context that ends in spaces gives them to the
continuation). Identical token sequences (the unconditional "Answer:" requests of different
documents, repeated choices) are scored once. Unique sequences are sorted longest first and run in
batches of similar length, right-padded; the continuation's token log-probabilities are gathered in
one vectorised step per batch. Sequences longer than `max_len` keep their last `max_len` tokens.
"""

from __future__ import annotations

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


def score_sequences(
    model, seqs: list[tuple[tuple[int, ...], int]], max_len: int, batch_tokens: int = 8192, device=None
) -> np.ndarray:
    """Sum of log P(continuation tokens | prefix) for each (ids, n_cont); identical inputs scored once."""
    import torch

    unique = {s: i for i, s in enumerate(dict.fromkeys(seqs))}
    keys = list(unique)
    lengths = np.array([min(len(ids), max_len + 1) for ids, _ in keys], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    result = np.zeros(len(keys), dtype=np.float64)
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        lo = 0
        while lo < len(order):
            width = max(int(lengths[order[lo]]) - 1, 1)  # inputs are all but the last token
            n = max(1, batch_tokens // max(width, 1))
            batch = order[lo : lo + n]
            lo += len(batch)
            result[batch] = _score_batch(model, [keys[i] for i in batch], width, device)
    model.train(was_training)
    return result[[unique[s] for s in seqs]]


def _score_batch(model, items, width: int, device) -> np.ndarray:
    """One right-padded forward pass; continuation log-probs summed per row."""
    import torch

    x = np.zeros((len(items), width), dtype=np.int64)
    y = np.zeros((len(items), width), dtype=np.int64)
    mask = np.zeros((len(items), width), dtype=bool)
    for row, (ids, n_cont) in enumerate(items):
        ids = np.asarray(ids[-(width + 1) :] if len(ids) > width + 1 else ids, dtype=np.int64)
        t = len(ids) - 1
        x[row, :t], y[row, :t] = ids[:-1], ids[1:]
        mask[row, max(0, t - n_cont) : t] = True
    logits = _logits(model(torch.from_numpy(x).to(device)))
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, torch.from_numpy(y).to(device)[..., None])[..., 0]
    picked = picked * torch.from_numpy(mask).to(device)
    return picked.sum(-1).double().cpu().numpy()


def _logits(out):
    """Our Transformer returns logits; a transformers model returns an output object."""
    return getattr(out, "logits", out)
