"""hrmkit models: HRM (ACT v1), TRM and a transformer baseline, with the references' ACT loss head.

Public interface (used by the training loop and the evaluator):
    build_model(arch, *, seq_len, vocab_size, num_puzzle_identifiers) -> ACTLossHead
    ACTLossHead.initial_carry(batch) -> Carry;  ACTLossHead.forward(carry, batch, return_keys=())
        -> (new_carry, loss, metrics, outputs, all_finished)
    build_optimizers(head, lr, puzzle_emb_lr, weight_decay, puzzle_emb_weight_decay, betas) -> [AdamAtan2, SignSGDSparse]
    puzzle_embedding_params(head) -> list[PuzzleEmbedding];  count_parameters(head) -> int
    compile_model(head, **options) -> head (segments compiled);  forward_dtype(head, name): context manager
    carry_to_state(carry) -> dict[str, Tensor];  carry_from_state(d) -> Carry
"""

import importlib

# Names resolve on first use (PEP 562) so that light submodules such as `presets` load without torch.
_EXPORTS = {
    "ACTModel": "act", "Carry": "act", "InnerCarry": "act", "carry_from_state": "act", "carry_to_state": "act",
    "build_model": "build", "build_optimizers": "build", "compile_model": "build", "count_parameters": "build",
    "flops_per_token": "build", "forward_dtype": "build",
    "puzzle_embedding_params": "build", "IGNORE_LABEL_ID": "losses", "ACTLossHead": "losses",
    "PuzzleEmbedding": "puzzle_embedding", "SignSGDSparse": "puzzle_embedding",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hrmkit.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hrmkit.models' has no attribute {name!r}")
