"""hrmkit models: HRM (ACT v1), TRM and a transformer baseline, with the references' ACT loss head.

Public interface (used by the training loop and the evaluator):
    build_model(arch, *, seq_len, vocab_size, num_puzzle_identifiers) -> ACTLossHead
    ACTLossHead.initial_carry(batch) -> Carry;  ACTLossHead.forward(carry, batch, return_keys=())
        -> (new_carry, loss, metrics, outputs, all_finished)
    build_optimizers(head, lr, puzzle_emb_lr, weight_decay, puzzle_emb_weight_decay, betas) -> [AdamAtan2, SignSGDSparse]
    puzzle_embedding_params(head) -> list[PuzzleEmbedding];  count_parameters(head) -> int
    carry_to_state(carry) -> dict[str, Tensor];  carry_from_state(d) -> Carry
"""

from hrmkit.models.act import ACTModel, Carry, InnerCarry, carry_from_state, carry_to_state
from hrmkit.models.build import build_model, build_optimizers, count_parameters, flops_per_token, puzzle_embedding_params
from hrmkit.models.losses import IGNORE_LABEL_ID, ACTLossHead
from hrmkit.models.puzzle_embedding import PuzzleEmbedding, SignSGDSparse

__all__ = [
    "ACTLossHead", "ACTModel", "Carry", "InnerCarry", "IGNORE_LABEL_ID", "PuzzleEmbedding", "SignSGDSparse",
    "build_model", "build_optimizers", "carry_from_state", "carry_to_state", "count_parameters",
    "flops_per_token", "puzzle_embedding_params",
]
