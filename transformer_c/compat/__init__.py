"""Course interfaces on top of transformer_c's one implementation.

- ``transformer_c.compat.mytorch``: CMU 11-785 HW4 "mytorch" classes (stateful
  forward/backward, True = masked), adapters over transformer_c.functional's C kernels.
- ``transformer_c.compat.hw4lib``: hw4lib's PadMask / CausalMask and the LM dataset.
- ``transformer_c.compat.mlp``: the POSTECH "mlp" framework's module paths
  (``mlp.tree.functions``) as an opt-in alias (``install()``).
"""
