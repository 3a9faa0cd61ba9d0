"""Shared sub-sum planning: exact, fewer adds than nonzeros, int16 bounds respected."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prom_tvm.schedules.ternary_cse import (
    chunk_terms,
    int16_fits,
    no_sharing,
    plan_subsums,
    term_counts,
)


def random_signs(rng, cout, cin, density):
    nz = rng.random((cout, cin)) < density
    return np.where(nz, rng.choice([-1, 1], (cout, cin)), 0).astype(np.int8)


@settings(max_examples=60, deadline=None)
@given(cin=st.integers(1, 40), cout=st.integers(1, 40), density=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**31 - 1))
def test_plan_reproduces_the_sign_matrix(cin, cout, density, seed):
    signs = random_signs(np.random.default_rng(seed), cout, cin, density)
    plan = plan_subsums(signs)
    np.testing.assert_array_equal(plan.expand(), signs)
    assert plan.nnz == int(np.count_nonzero(signs))
    # every temporary is built from earlier variables and used somewhere
    for t, (a, b, rel) in enumerate(plan.temps):
        assert a < b < cin + t and rel in (-1, 1)
    # sharing never costs more adds than summing each output directly
    assert plan.adds <= no_sharing(signs).adds


@pytest.mark.parametrize("cin,cout", [(16, 96), (24, 144), (96, 24), (32, 192), (144, 32)])
def test_fewer_adds_than_nonzeros_on_half_dense_layers(cin, cout):
    signs = random_signs(np.random.default_rng(cin * cout), cout, cin, 0.5)
    plan = plan_subsums(signs, int16_fits("uint8"))
    direct = no_sharing(signs)
    assert direct.adds >= plan.nnz - cout  # the direct sum spends about one add per nonzero
    assert plan.adds < 0.8 * plan.nnz, (plan.adds, plan.nnz)
    assert len(plan.temps) > 0


def test_pairs_are_extracted_only_when_shared():
    # (x0 - x1) occurs in both outputs: one temporary, 3 adds instead of 4
    signs = np.array([[1, -1, 1, 0], [1, -1, 0, 1]])
    plan = plan_subsums(signs)
    assert plan.temps == ((0, 1, -1),)
    assert plan.adds == 3 and no_sharing(signs).adds == 4
    # nothing recurs: no temporary
    assert plan_subsums(np.array([[1, 1, 0], [0, -1, 1]])).temps == ()


def test_temporaries_respect_the_bound():
    signs = np.ones((8, 40), np.int8)
    small = plan_subsums(signs, fits=lambda p, n: p + n <= 4)
    counts = small.var_counts()
    assert all(p + n <= 4 for p, n in counts)
    np.testing.assert_array_equal(small.expand(), signs)
    assert len(plan_subsums(signs).var_counts()) > len(counts) - 1  # unbounded shares more


def test_chunks_fit_int16_and_keep_every_term():
    fits = int16_fits("uint8")
    assert fits(128, 128) and not fits(129, 0)
    assert int16_fits("int8")(255, 0) and not int16_fits("int8")(128, 128)
    signs = np.ones((2, 300), np.int8)
    plan = plan_subsums(signs, fits)
    counts = plan.var_counts()
    for terms in plan.outputs:
        chunks = chunk_terms(terms, counts, fits)
        assert len(chunks) == 3  # 300 inputs, at most 128 per int16 chunk
        assert [t for c in chunks for t in c] == list(terms)
        assert all(fits(*term_counts(c, counts)) for c in chunks)


def test_negations_are_free():
    plan = no_sharing(np.array([[-1, -1], [1, 0], [0, 0], [0, -1]]))
    assert plan.adds == 1  # x0 + x1 (the kernel negates bias and scale); the others are free
    # a shared pair that leaves outputs with one negative term each still saves adds
    signs = np.array([[-1, 1, 0], [-1, 1, 0], [-1, 1, 1]])
    assert plan_subsums(signs).adds < no_sharing(signs).adds
