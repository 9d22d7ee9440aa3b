"""The shared vocabulary (operation types, which need a center) is defined once, in :mod:`dragnext.vocabulary`."""

import re
from pathlib import Path

import numpy as np
import pytest

from dragnext import geometry, ground_truth, instructions, limits, vocabulary
from dragnext.bench import suites
from dragnext.instructions import json_format, request, validation

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_uses_the_same_objects():
    for module in (instructions, request, validation, json_format, geometry, ground_truth, suites):
        if hasattr(module, "OPERATION_TYPES"):
            assert module.OPERATION_TYPES is vocabulary.OPERATION_TYPES, module.__name__
        if hasattr(module, "NEEDS_CENTER"):
            assert module.NEEDS_CENTER is vocabulary.NEEDS_CENTER, module.__name__
    assert instructions.OPERATION_TYPES is vocabulary.OPERATION_TYPES
    assert instructions.NEEDS_CENTER is vocabulary.NEEDS_CENTER
    assert set(vocabulary.NEEDS_CENTER) <= set(vocabulary.OPERATION_TYPES)


def test_the_error_type_is_one_class():
    assert instructions.InstructionError is limits.InputError


@pytest.mark.parametrize("op_type", vocabulary.OPERATION_TYPES)
def test_geometry_and_ground_truth_handle_every_type(op_type):
    center = (10.0, 10.0) if op_type in vocabulary.NEEDS_CENTER else None
    matrix = geometry.motion_matrix(op_type, (20.0, 10.0), (10.0, 20.0) if center else (24.0, 12.0), center)
    assert matrix.shape == (3, 3) and np.isfinite(matrix).all()
    assert ground_truth.random_edit(0, op_type).request.operations[0].type == op_type


def test_the_synthetic_suite_covers_every_type_in_order():
    types = [sample.id.split("-")[0] for sample in suites.synthetic_suite(per_type=1)]
    assert tuple(dict.fromkeys(types)) == vocabulary.OPERATION_TYPES


def test_no_module_spells_the_tuples_again():
    literal = re.compile(r"\(\s*\"translate\",\s*\"deform\"|\(\s*\"rotate\",\s*\"scale\"\s*\)")
    sources = [*(ROOT / "src" / "dragnext").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    spelled = [str(path.relative_to(ROOT)) for path in sources if literal.search(path.read_text(encoding="utf-8"))]
    assert spelled == ["src/dragnext/vocabulary.py"]
