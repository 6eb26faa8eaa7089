"""Which member wins a pixel: the pieces of each union time step in priority order. Pure functions.

Within one time step, members are laid over each other in search order, or by ``sort_by`` (least first, a
missing value last), reversed for ``overlap="last"``; a pixel then takes the first piece with a valid value there.
"""

from __future__ import annotations

from stackcube.options import sort_rank
from stackcube.union._plan import Piece, UnionPlan

__all__ = ["order_steps"]


def order_steps(union: UnionPlan) -> tuple[list[list[Piece]], list[str]]:
    """Per time step, its pieces in priority order, and the item ids of the step in that order (comma-joined)."""
    steps: list[list[Piece]] = []
    ids: list[str] = []
    for step in union.steps:
        pieces = list(step)
        if union.sort_by:
            pieces.sort(key=lambda piece: sort_rank(union.member_keys[piece[0]][piece[1]]))
        if union.overlap == "last":
            pieces.reverse()
        steps.append(pieces)
        ids.append(",".join(union.member_ids[m][t] for m, t in pieces))
    return steps, ids
