"""Spec: invalid configurations are refused with a message that says how to fix them."""

from __future__ import annotations

import itertools

import pytest

from bnderive import Mode, Spec, SpecError


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n": 0}, ("n=0", "at least 1")),
        ({"n": -3}, ("n=-3", "at least 1")),
        ({"c": 0}, ("c=0", "at least 1")),
        ({"mode": Mode.SPATIAL, "h": 0}, ("h=0", "at least 1")),
        ({"n": 2.0}, ("n=2.0", "not an integer")),
        ({"n": "4"}, ("'4'", "not an integer")),
        ({"c": True}, ("c=True", "not an integer")),
        ({"w": None, "mode": Mode.SPATIAL}, ("w=None", "not an integer")),
        ({"mode": "channels"}, ("'channels'", "per-activation", "spatial")),
        ({"h": 2}, ("h=2", "(N, D)", "spatial")),
        ({"w": 3}, ("w=3", "spatial")),
        ({"n": 1, "unbiased": True}, ("M-1", "at least two")),
        ({"mode": Mode.SPATIAL, "n": 1, "unbiased": True}, ("M-1",)),
    ],
)
def test_invalid_specs_are_refused_helpfully(kwargs, words):
    with pytest.raises(SpecError) as info:
        Spec(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_spec_error_is_a_value_error():
    with pytest.raises(ValueError):
        Spec(n=0)


def test_bessel_needs_two_elements_only_in_training():
    assert Spec(n=1, unbiased=True, training=False).m == 1  # eval: the variance is not computed
    assert Spec(n=2, unbiased=True).m == 2
    assert Spec(Mode.SPATIAL, n=1, h=2, w=1, unbiased=True).m == 2  # M = N·H·W, not N


@pytest.mark.parametrize(
    "text", ["per-activation", "PER_ACTIVATION", "per_activation", " Per-Activation "]
)
def test_mode_names(text):
    assert Mode.parse(text) is Mode.PER_ACTIVATION
    assert Spec(mode=text).mode is Mode.PER_ACTIVATION


def test_spatial_mode_name():
    assert Mode.parse("SPATIAL") is Mode.parse("spatial") is Mode.SPATIAL
    assert Mode.parse(Mode.SPATIAL) is Mode.SPATIAL


def test_per_activation_shape_and_sets():
    spec = Spec(Mode.PER_ACTIVATION, n=5, c=3)
    assert spec.shape == (5, 3)
    assert spec.m == 5
    assert spec.reduction_axes == (0,)
    assert spec.positions(2) == [(n, 2) for n in range(5)]


def test_spatial_shape_and_sets():
    spec = Spec(Mode.SPATIAL, n=2, c=3, h=4, w=5)
    assert spec.shape == (2, 3, 4, 5)
    assert spec.m == 2 * 4 * 5
    assert spec.reduction_axes == (0, 2, 3)
    positions = spec.positions(1)
    assert len(positions) == spec.m == len(set(positions))
    assert all(p[1] == 1 for p in positions)
    assert positions == sorted(positions)  # row-major order
    assert positions[:3] == [(0, 1, 0, 0), (0, 1, 0, 1), (0, 1, 0, 2)]


@pytest.mark.parametrize(
    "spec",
    [Spec(Mode.PER_ACTIVATION, n=4, c=3), Spec(Mode.SPATIAL, n=2, c=3, h=2, w=3)],
    ids=["per-activation", "spatial"],
)
def test_reduction_sets_partition_the_input(spec):
    """Each element belongs to exactly one reduction set: the one of its channel (axis 1), and
    the set runs over exactly the reduction axes."""
    sets = [spec.positions(c) for c in range(spec.c)]
    every = [p for s in sets for p in s]
    assert sorted(every) == list(itertools.product(*(range(d) for d in spec.shape)))
    for c, positions in enumerate(sets):
        assert {p[1] for p in positions} == {c}
        for axis in range(len(spec.shape)):
            seen = {p[axis] for p in positions}
            if axis in spec.reduction_axes:
                assert seen == set(range(spec.shape[axis]))
            else:
                assert len(seen) == 1


def test_defaults_and_describe():
    spec = Spec()
    assert (spec.mode, spec.n, spec.c, spec.h, spec.w) == (Mode.PER_ACTIVATION, 4, 1, 1, 1)
    assert spec.training and spec.eps_inside and not spec.unbiased
    text = Spec(Mode.SPATIAL, n=2, c=3, h=4, w=5, unbiased=True, eps_inside=False).describe()
    for word in ("spatial", "2×3×4×5", "M=40", "unbiased", "outside"):
        assert word in text
    assert "eval" in Spec(training=False).describe()


def test_specs_are_values():
    assert Spec(n=3, c=2) == Spec(Mode.PER_ACTIVATION, n=3, c=2)
    assert hash(Spec(n=3)) == hash(Spec(n=3))
    assert Spec(n=3) != Spec(n=3, unbiased=True)
    with pytest.raises(AttributeError):
        Spec().n = 5  # type: ignore[misc]
