"""The tracker's numpy assignment solver gives scipy's answer, pair for pair, on any matrix."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from mie_pose.tracking import assignment, tracker
from mie_pose.tracking.assignment import linear_sum_assignment

scipy_optimize = pytest.importorskip("scipy.optimize")


def _matrices(rng, count):
    """Wide, tall, square and empty shapes; continuous costs, small integers (many ties), constants,
    forbidden pairs (inf) and large negative costs."""
    for trial in range(count):
        rows, cols = (int(n) for n in rng.integers(0, 9, 2))
        kind = trial % 5
        if kind == 0:
            yield rng.random((rows, cols))
        elif kind == 1:
            yield rng.integers(0, 3, (rows, cols)).astype(float)
        elif kind == 2:
            yield np.full((rows, cols), 1.0)
        elif kind == 3:
            matrix = rng.integers(0, 4, (rows, cols)).astype(float)
            matrix[rng.random((rows, cols)) < 0.3] = np.inf
            yield matrix
        else:
            yield -rng.random((rows, cols)) * 1e3


def _solve(function, matrix, maximize):
    try:
        return function(matrix, maximize=maximize)
    except ValueError as exc:
        return str(exc)


@pytest.mark.parametrize("maximize", [False, True])
def test_same_pairs_as_scipy(maximize):
    rng = np.random.default_rng(13)
    compared = infeasible = 0
    for matrix in _matrices(rng, 3000):
        matrix = -matrix if maximize else matrix  # inf stays a forbidden pair in both senses
        expected = _solve(scipy_optimize.linear_sum_assignment, matrix, maximize)
        got = _solve(linear_sum_assignment, matrix, maximize)
        if isinstance(expected, str):
            assert got == expected, matrix
            infeasible += 1
            continue
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]), matrix
        assert got[0].dtype == expected[0].dtype and got[1].dtype == expected[1].dtype
        compared += 1
    assert compared > 2500 and infeasible > 5


def test_tracker_shaped_similarities_match_scipy():
    """What the tracker passes: minus a similarity in [0, 1], with zeros for pairs it rules out."""
    rng = np.random.default_rng(7)
    for _ in range(500):
        similarity = rng.random((int(rng.integers(1, 12)), int(rng.integers(1, 12))))
        similarity[similarity < 0.4] = 0.0
        expected = scipy_optimize.linear_sum_assignment(-similarity)
        got = linear_sum_assignment(-similarity)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_bad_input_is_refused_like_scipy():
    for matrix in (np.zeros((2, 2, 2)), np.zeros(3), np.array([[np.nan, 1.0]]), np.array([[-np.inf, 1.0]])):
        with pytest.raises(ValueError) as ours:
            linear_sum_assignment(matrix)
        with pytest.raises(ValueError) as theirs:
            scipy_optimize.linear_sum_assignment(matrix)
        assert str(ours.value) == str(theirs.value)


def test_tracker_and_solver_do_not_import_scipy():
    for module in (tracker, assignment):
        tree = ast.parse(open(module.__file__).read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name.split(".")[0] == "scipy" for name in imported), module.__name__
