"""Names shared by every part of DragNeXt: the operation types, and which of them turn about a center.

Defined once here and imported everywhere else (instructions, geometry, the benchmark, the UI). No imports,
so any module, torch-free or not, can use it.
"""

# The drag types, in the order the UI, the benchmark and messages list them.
OPERATION_TYPES = ("translate", "deform", "rotate", "scale")
# The types that need a center point: the angle or factor is measured about it.
NEEDS_CENTER = ("rotate", "scale")
