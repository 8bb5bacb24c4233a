"""The NAS baselines' cell genotypes, as data (facts from their public releases).

RobNet-large-v2: gmh14/RobNets `architecture_code.py` (one cell shared by every layer; the
authors' copy in zhichao-lu/robust-residual-network `models/robnet.py` fixes the same code).
AdvRush and RACL: nutellamok/advrush `genotypes.py`, copied into the authors'
`models/genotypes_advrush.py` (`ADVRUSH`, `RACL`). Edges are (operation, input state).
"""

from __future__ import annotations

from .cellspec import Cell, robnet_cell

ROBNET_LARGE_V2: Cell = robnet_cell(
    ("11", "11", "11", "11", "11", "01", "11", "01", "10", "11", "01", "01", "01", "11")
)

ADVRUSH_NORMAL: Cell = (
    (("sep_conv_3x3", 1), ("sep_conv_3x3", 0)),
    (("sep_conv_5x5", 0), ("sep_conv_3x3", 1)),
    (("sep_conv_3x3", 1), ("sep_conv_3x3", 0)),
    (("skip_connect", 0), ("sep_conv_3x3", 1)),
)
ADVRUSH_REDUCE: Cell = (
    (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
    (("skip_connect", 0), ("dil_conv_3x3", 2)),
    (("skip_connect", 0), ("avg_pool_3x3", 1)),
    (("skip_connect", 0), ("skip_connect", 2)),
)

RACL_NORMAL: Cell = (
    (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
    (("sep_conv_5x5", 0), ("skip_connect", 1)),
    (("sep_conv_3x3", 0), ("skip_connect", 3)),
    (("sep_conv_3x3", 3), ("skip_connect", 4)),
)
RACL_REDUCE: Cell = (
    (("sep_conv_3x3", 0), ("sep_conv_5x5", 1)),
    (("avg_pool_3x3", 0), ("dil_conv_3x3", 1)),
    (("sep_conv_3x3", 0), ("sep_conv_5x5", 1)),
    (("sep_conv_3x3", 2), ("dil_conv_3x3", 3)),
)

# Every cell of these genotypes outputs its four nodes (states 2..5).
FOUR_NODES = (2, 3, 4, 5)
