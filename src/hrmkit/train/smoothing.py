"""Label smoothing of the LM loss (`label_smoothing = eps`), applied by the loop without changing the model.

The loss head computes `lm_loss = sum_rows mean_over_labelled_tokens CE` (stablemax or softmax, DESIGN.md §3).
Smoothing replaces CE by `(1 - eps) * CE + eps * mean_over_vocab(-log p)`. The head does not return logits
with their graph, so `LabelSmoothing` captures the lm_head output of the differentiated segment with a forward
hook (the extra no-grad Q-target segment is ignored) and returns the correction term
`eps * sum_rows mean_over_labelled_tokens (mean_v(-log p_v) - CE)` to add to the head's loss. The same log
probabilities as the head's loss type are used (stablemax in float64, or log-softmax).
"""

from __future__ import annotations

import torch

from hrmkit.models.losses import IGNORE_LABEL_ID, log_stablemax


class LabelSmoothing:
    """Hook on `head.model.inner.lm_head`; `correction(labels)` after each training forward (eps > 0)."""

    def __init__(self, head: torch.nn.Module, eps: float):
        self.eps = float(eps)
        self.inner = head.model.inner
        self.stablemax = head.loss_type == "stablemax_cross_entropy"
        self._logits: torch.Tensor | None = None
        self._handle = self.inner.lm_head.register_forward_hook(self._capture)

    def _capture(self, module, args, output) -> None:
        if torch.is_grad_enabled() and module.training:
            self._logits = output[:, self.inner.puzzle_len:]

    def correction(self, labels: torch.Tensor) -> torch.Tensor:
        """The term to add to the head's loss for this forward (labels [B, S], -100 ignored)."""
        logits, self._logits = self._logits, None
        if logits is None:
            raise RuntimeError("label smoothing: no lm_head output was captured in this forward")
        if self.stablemax:
            logp = log_stablemax(logits.to(torch.float64), dim=-1)
        else:
            logp = torch.log_softmax(logits.to(torch.float32), dim=-1)
        mask = labels != IGNORE_LABEL_ID
        idx = torch.where(mask, labels, 0).long().unsqueeze(-1)
        nll = -logp.gather(-1, idx).squeeze(-1)
        uniform = -logp.mean(dim=-1)
        per_token = torch.where(mask, uniform - nll, 0)
        divisor = mask.sum(-1).clamp_min(1).unsqueeze(-1)
        return self.eps * (per_token / divisor).sum()

    def remove(self) -> None:
        self._handle.remove()
