"""Cross-entropy over the vocabulary without materialising the logits: chunks of tokens, liger-style.

At 7B the logits of a batch are tokens x 152,064 values (bf16, then float32 for the loss): about 1.2 GB
per 1,000 tokens with their float32 copy and gradient, the largest activation of the step. Here the loss is
computed a chunk of tokens at a time from the final hidden states and the lm_head weight, and each chunk's
gradients (d hidden, and d weight when the head trains) are computed right then, in the forward, so no
chunk's logits outlive its iteration (as Liger-Kernel's FusedLinearCrossEntropy does). Only supervised
positions (label != -100) are computed at all: prompt and image tokens, most of a chat, cost nothing.

The maths is transformers' causal-LM loss: logits[:, :-1] against labels[:, 1:], float32 log-softmax, the
mean over supervised tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

IGNORE_INDEX = -100


class _ChunkedLinearCE(torch.autograd.Function):
    """Mean cross-entropy of (hidden @ weight.T) against targets, all valid; gradients made in forward."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        # hidden (N, D), weight (V, D), targets (N,) every one a real class
        n = hidden.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        scale = 1.0 / max(n, 1)
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk]  # (c, D)
            t = targets[start : start + chunk]  # (c,)
            logits = (h @ weight.t()).float()  # (c, V): the only logits alive, one chunk at a time
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            total += (lse - logits.gather(1, t[:, None])[:, 0]).sum()
            if grad_h is None and grad_w is None:
                continue
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0  # d loss / d logits, times n
            d_logits = (probs * scale).to(h.dtype)  # (c, V)
            if grad_h is not None:
                grad_h[start : start + chunk] = d_logits @ weight.to(h.dtype)
            if grad_w is not None:
                grad_w += (d_logits.t() @ h).float()
        ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
        ctx.has = (grad_h is not None, grad_w is not None)
        ctx.hidden_dtype, ctx.weight_dtype = hidden.dtype, weight.dtype
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        grad_h = (saved.pop(0) * grad_out).to(ctx.hidden_dtype) if ctx.has[0] else None
        grad_w = (saved.pop(0) * grad_out).to(ctx.weight_dtype) if ctx.has[1] else None
        return grad_h, grad_w, None, None


def supervised_rows(labels: Tensor) -> Tensor:
    """(n,) rows of the shifted, flattened labels (labels[:, 1:] of (B, L)) that are supervised."""
    return (labels[:, 1:].reshape(-1) != IGNORE_INDEX).nonzero()[:, 0]


def chunked_cross_entropy(
    hidden: Tensor, weight: Tensor, labels: Tensor, *, chunk: int = 1024, rows: Tensor | None = None
) -> Tensor:
    """transformers' causal-LM loss from hidden states: mean CE of hidden[:, i] @ weight.T vs labels[:, i+1].

    hidden (B, L, D) the final (normed) hidden states, weight (V, D) the lm_head weight, labels (B, L)
    with -100 where nothing is supervised. rows: `supervised_rows(labels)` made on the host (from the CPU
    labels, as model/host_index.py does); without it they are selected here, which reads their count on
    the host (one sync at the end of the forward). No supervised token: a zero loss still linked to the graph.
    """
    if chunk < 1:
        raise ValueError(f"chunked cross-entropy needs chunk >= 1 tokens, got {chunk}")
    d = hidden.shape[-1]
    h = hidden[:, :-1].reshape(-1, d)  # (B (L-1), D)
    t = labels[:, 1:].reshape(-1).to(h.device)  # (B (L-1),)
    keep = supervised_rows(labels.to(h.device)) if rows is None else rows.to(h.device)  # (n,)
    if keep.numel() == 0:
        return (hidden.sum() * 0.0).float()
    return _ChunkedLinearCE.apply(h.index_select(0, keep), weight, t.index_select(0, keep), chunk)


__all__ = ["IGNORE_INDEX", "chunked_cross_entropy", "supervised_rows"]
