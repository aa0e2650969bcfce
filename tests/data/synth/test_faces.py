from __future__ import annotations

import numpy as np
import pytest

from fmlkit.data.synth.faces import create_identity, render_face


def test_render_face_is_a_pure_function_of_the_generator() -> None:
    ident = create_identity(np.random.default_rng(3))
    a = render_face(ident, np.random.default_rng(9), 112)
    b = render_face(ident, np.random.default_rng(9), 112)
    c = render_face(ident, np.random.default_rng(10), 112)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert (a.mode, a.size) == ("RGB", (112, 112))


@pytest.mark.parametrize("size", [64, 112, 224])
def test_render_face_sizes_use_the_full_value_range(size: int) -> None:
    img = np.asarray(
        render_face(create_identity(np.random.default_rng(0)), np.random.default_rng(1), size)
    )
    assert img.shape == (size, size, 3)
    assert img.std() > 20  # not blank: a face on a textured background


def test_identities_differ() -> None:
    a, b = (create_identity(np.random.default_rng(i)) for i in (0, 1))
    assert a != b
    assert create_identity(np.random.default_rng(0)) == a
