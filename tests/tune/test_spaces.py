import math

import numpy as np
import pytest

from fastnn import tune


def test_samples_lie_in_their_ranges_and_log_scale_is_uniform_in_log():
    rng = np.random.default_rng(0)
    space = {"a": tune.uniform(-1, 2), "b": tune.loguniform(1e-4, 1e-1), "c": tune.randint(2, 5),
             "d": tune.quniform(16, 128, 16), "e": tune.choice(["x", "y"]), "f": 7}
    draws = [tune.sample(space, rng) for _ in range(2000)]
    assert all(-1 <= d["a"] <= 2 and 1e-4 <= d["b"] <= 1e-1 and d["c"] in (2, 3, 4) and d["f"] == 7 for d in draws)
    assert all(isinstance(d["d"], int) and d["d"] % 16 == 0 and 16 <= d["d"] <= 128 for d in draws)
    assert {d["e"] for d in draws} == {"x", "y"} and {d["c"] for d in draws} == {2, 3, 4}
    logs = np.log10([d["b"] for d in draws])
    # uniform in [-4, -1]: each third of the log range holds ~1/3 of the draws (binomial sd ~ 0.011)
    thirds = np.histogram(logs, bins=[-4, -3, -2, -1])[0] / len(logs)
    assert np.all(np.abs(thirds - 1 / 3) < 0.05), thirds


def test_grid_is_the_product_of_the_axes():
    space = {"lr": tune.loguniform(1e-3, 1e-1), "h": tune.choice([8, 16]), "n": tune.randint(1, 3)}
    configs = tune.grid(space, points=3)
    assert len(configs) == 3 * 2 * 2
    assert sorted({round(math.log10(c["lr"]), 9) for c in configs}) == [-3, -2, -1]
    assert len({tuple(sorted(c.items())) for c in configs}) == 12


def test_narrow_spans_the_best_values_inside_the_old_range():
    space = {"lr": tune.loguniform(1e-5, 1.0), "h": tune.choice([8, 16, 32]), "q": tune.quniform(0, 100, 10),
             "n": tune.randint(0, 50)}
    best = [{"lr": 1e-3, "h": 16, "q": 40, "n": 10}, {"lr": 1e-2, "h": 32, "q": 60, "n": 20}]
    narrowed = tune.narrow(space, best, margin=0.5)
    assert narrowed["lr"].low == pytest.approx(10 ** -3.5) and narrowed["lr"].high == pytest.approx(10 ** -1.5)
    assert narrowed["h"].options == [16, 32]
    assert (narrowed["q"].low, narrowed["q"].high) == (30, 70)
    assert (narrowed["n"].low, narrowed["n"].high) == (5, 26)


@pytest.mark.parametrize("make, message", [
    (lambda: tune.uniform(1, 1), "low must be < high"),
    (lambda: tune.loguniform(0, 1), "low must be > 0"),
    (lambda: tune.choice([]), "must not be empty"),
    (lambda: tune.quniform(1, 2, 5), "no multiple"),
    (lambda: tune.randint(3, 3), "low must be < high"),
])
def test_bad_ranges_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
