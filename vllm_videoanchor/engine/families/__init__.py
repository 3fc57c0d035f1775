"""Per-family layout hooks and the anchored classes vLLM registers, one module per family.

A family module subclasses vLLM's processing info, processor and model classes with the
anchor mixins and supplies the layout hooks: where an item's visual tokens are in the
processor's outputs (`_visual_items`), which outputs form a group's encoder call
(`_group_keys`), and which rows of an item's embedding are visual tokens (`_solver_rows`).
"""
