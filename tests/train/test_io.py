"""fastnn.save / fastnn.load: round trips, resuming training, damaged files, atomic writes."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.io import ModelFileError
from fastnn.train import ModelCheckpoint
from tests.train.cases import FEATURES, assert_state_equal, blobs, metrics, mlp, state_differs

OPTIMIZERS = {
    "sgd_nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam_amsgrad": lambda p: optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2),
    "rmsprop": lambda p: optim.RMSprop(p, lr=1e-3, centered=True),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.1),
}


def every_layer(dtype=np.float32):
    """A model with every layer class the file format knows that takes (N, features) input."""
    fastnn.manual_seed(1)
    inner = nn.Sequential(nn.Linear(16, 24, activation="tanh", dtype=dtype), nn.Maxout(2), nn.PReLU(12, dtype=dtype),
                          nn.RReLU(), nn.ELU(alpha=0.5), nn.SELU())
    return nn.Sequential(
        nn.Linear(FEATURES, 16, dtype=dtype), nn.BatchNorm1d(16, momentum=0.2, dtype=dtype),
        nn.LeakyReLU(0.1), nn.Dropout(0.25), inner, nn.Identity(), nn.Sigmoid(),
        nn.Linear(12, 4, bias=False, activation="leaky_relu", negative_slope=0.2, dtype=dtype), nn.Tanh())


def trained(builder=mlp, opt_name="adam_amsgrad", epochs=2):
    X, y = blobs(64)
    model = builder()
    opt = OPTIMIZERS[opt_name](model.parameters())
    fastnn.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=16, seed=0, verbose=0)
    return model, opt


def assert_optimizer_equal(a, b):
    assert type(a) is type(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sorted(sa["state"]) == sorted(sb["state"])
    for key in sa["state"]:
        assert sa["state"][key].dtype == sb["state"][key].dtype, key
        np.testing.assert_array_equal(sa["state"][key], sb["state"][key], err_msg=key)


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_round_trip(tmp_path, dtype, opt_name):
    model, opt = trained(lambda: every_layer(dtype), opt_name)
    extra = {"epoch": 3, "note": "héllo", "lrs": [0.1, 0.01], "nested": {"a": None, "b": True}}
    path = tmp_path / "model.fnn"
    fastnn.save(path, model, opt, extra=extra)

    loaded, loaded_opt, loaded_extra = fastnn.load(path, with_optimizer=True)
    assert loaded_extra == extra
    assert loaded.dtype == np.dtype(dtype)
    assert repr(loaded) == repr(model)
    assert_state_equal(loaded, model)
    assert_optimizer_equal(loaded_opt, opt)
    assert not loaded.training  # loaded for inference
    X, _ = blobs(32, dtype=dtype)
    np.testing.assert_array_equal(fastnn.predict(loaded, X), fastnn.predict(model, X))
    only_model = fastnn.load(str(path))  # str or PathLike; the model alone by default
    assert isinstance(only_model, nn.Sequential)
    assert_state_equal(only_model, model)


def test_round_trip_without_optimizer_and_extra(tmp_path):
    model, _ = trained()
    fastnn.save(tmp_path / "m.fnn", model)
    loaded, opt, extra = fastnn.load(tmp_path / "m.fnn", with_optimizer=True)
    assert opt is None and extra == {}
    assert_state_equal(loaded, model)


def test_loaded_optimizer_continues_exactly(tmp_path):
    model, opt = trained(lambda: mlp(batchnorm=True, dropout=0.2), "adam_amsgrad")
    fastnn.save(tmp_path / "m.fnn", model, opt)
    loaded, loaded_opt, _ = fastnn.load(tmp_path / "m.fnn", with_optimizer=True)
    X, y = blobs(64, seed=5)
    for m, o in ((model, opt), (loaded, loaded_opt)):
        fastnn.fit(m, X, y, optimizer=o, epochs=1, batch_size=16, seed=9, verbose=0)
    assert_state_equal(loaded, model)
    assert_optimizer_equal(loaded_opt, opt)


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path):
    a, _ = trained()
    b = mlp(hidden=8)
    fastnn.save(tmp_path / "m.fnn", a)
    fastnn.save(tmp_path / "m.fnn", b)
    assert os.listdir(tmp_path) == ["m.fnn"]
    assert_state_equal(fastnn.load(tmp_path / "m.fnn"), b)


# --- resuming training ------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("how", ["checkpoint", "save"])
def test_resume_equals_an_uninterrupted_run(tmp_path, how, shuffle):
    """With dropout: the shuffling and dropout streams continue where they stopped."""
    X, y = blobs(96)
    Xv, yv = blobs(32, seed=3)
    kw = dict(batch_size=16, seed=11, shuffle=shuffle, validation_data=(Xv, yv), verbose=0)
    build = lambda: mlp(batchnorm=True, dropout=0.3)  # noqa: E731

    full = build()
    h_full = fastnn.fit(full, X, y, optimizer=optim.Adam(full.parameters()), epochs=4, **kw)

    first = build()
    first_opt = optim.Adam(first.parameters())
    ckpt = ModelCheckpoint(tmp_path / "ckpt-{epoch}.fnn")
    fastnn.fit(first, X, y, optimizer=first_opt, epochs=2, callbacks=[ckpt] if how == "checkpoint" else [], **kw)
    if how == "save":
        fastnn.save(tmp_path / "ckpt-2.fnn", first, first_opt, extra={"epoch": 2})
    del first, first_opt

    model, opt, extra = fastnn.load(tmp_path / "ckpt-2.fnn", with_optimizer=True)
    h_rest = fastnn.fit(model, X, y, optimizer=opt, epochs=4, initial_epoch=extra["epoch"], **kw)
    assert h_rest.epoch == [2, 3]
    assert_state_equal(model, full)
    assert {k: v[2:] for k, v in metrics(h_full).items()} == metrics(h_rest)

    # Control: restarting the streams at epoch 0 gives another result, so the check above has teeth.
    model, opt, _ = fastnn.load(tmp_path / "ckpt-2.fnn", with_optimizer=True)
    fastnn.fit(model, X, y, optimizer=opt, epochs=2, initial_epoch=0, **kw)
    assert state_differs(model.state_dict(), full.state_dict())


# --- damaged and foreign files ------------------------------------------------------------------------


@pytest.fixture
def good_file(tmp_path):
    model, opt = trained()
    path = tmp_path / "good.fnn"
    fastnn.save(path, model, opt, extra={"epoch": 2})
    return path


def rewrite(src, dst, edit_meta=None, replace=None, drop=()):
    """Copies the zip `src` to `dst`, editing fastnn.json with edit_meta(meta) and replacing/dropping members."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            if name == "fastnn.json" and edit_meta:
                meta = json.loads(data)
                edit_meta(meta)
                data = json.dumps(meta).encode()
            zout.writestr(name, replace.get(name, data))
    return dst


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def assert_bad_file(path, pattern):
    with pytest.raises(ModelFileError, match=pattern) as info:
        fastnn.load(path, with_optimizer=True)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)  # the message names the file


@pytest.mark.parametrize("keep", [0, 10, 0.5, 0.99, -1])
def test_truncated_file(good_file, tmp_path, keep):
    data = good_file.read_bytes()
    n = keep if isinstance(keep, int) and keep >= 0 else int(len(data) * keep) if keep > 0 else len(data) + keep
    bad = tmp_path / "truncated.fnn"
    bad.write_bytes(data[:n])
    assert_bad_file(bad, r"not a readable fastnn model file \(truncated or corrupted\?\)")


def test_random_bytes(tmp_path):
    bad = tmp_path / "random.fnn"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_bad_file(bad, "truncated or corrupted")


def test_corrupted_member(good_file, tmp_path):
    data = bytearray(good_file.read_bytes())
    with zipfile.ZipFile(good_file) as z:  # flip bytes inside the first array's compressed data
        info = z.infolist()[1]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start:start + 8] = b"\xff" * 8
    bad = tmp_path / "flipped.fnn"
    bad.write_bytes(bytes(data))
    assert_bad_file(bad, "truncated or corrupted")


def test_zip_without_fastnn_json(good_file, tmp_path):
    assert_bad_file(rewrite(good_file, tmp_path / "nojson.fnn", drop=["fastnn.json"]), "no fastnn.json inside")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hello")
    assert_bad_file(other, "no fastnn.json inside")


def test_invalid_json(good_file, tmp_path):
    assert_bad_file(rewrite(good_file, tmp_path / "j.fnn", replace={"fastnn.json": b"{not json"}),
                    "truncated or corrupted")


def test_foreign_format_and_future_version(good_file, tmp_path):
    assert_bad_file(rewrite(good_file, tmp_path / "f.fnn", edit_meta=lambda m: m.update(format="keras")),
                    "not a fastnn model file")
    assert_bad_file(rewrite(good_file, tmp_path / "v.fnn", edit_meta=lambda m: m.update(version=99)),
                    "version 99")


def _rename_first_layer(meta):
    meta["architecture"]["children"][0][1]["class"] = "Conv9d"


def test_unknown_layer_class(good_file, tmp_path):
    assert_bad_file(rewrite(good_file, tmp_path / "u.fnn", edit_meta=_rename_first_layer),
                    r"unknown layer class 'Conv9d'")


def test_bad_layer_config(good_file, tmp_path):
    def bad_config(meta):
        meta["architecture"]["children"][0][1]["config"]["in_features"] = -3

    assert_bad_file(rewrite(good_file, tmp_path / "c.fnn", edit_meta=bad_config), r"cannot rebuild Linear")


def test_mismatched_weight_shape(good_file, tmp_path):
    bad = rewrite(good_file, tmp_path / "s.fnn",
                  replace={"model/0.weight.npy": npy_bytes(np.zeros((3, 3), np.float32))})
    assert_bad_file(bad, r"weights do not match the architecture.*0\.weight.*\(3, 3\)")


def test_missing_weight(good_file, tmp_path):
    assert_bad_file(rewrite(good_file, tmp_path / "m.fnn", drop=["model/2.bias.npy"]),
                    r"weights do not match the architecture.*2\.bias")


def test_nan_weights(good_file, tmp_path):
    bad = rewrite(good_file, tmp_path / "n.fnn",
                  replace={"model/2.bias.npy": npy_bytes(np.full(4, np.nan, np.float32))})
    assert_bad_file(bad, r"2\.bias.*NaN")


def test_pickled_array_is_refused(good_file, tmp_path):
    """Loading never unpickles: an object array is an error, not code execution."""
    bad = rewrite(good_file, tmp_path / "p.fnn",
                  replace={"model/2.bias.npy": npy_bytes(np.array([{"x": 1}], dtype=object), allow_pickle=True)})
    assert_bad_file(bad, "truncated or corrupted")


def test_bad_optimizer_entries(good_file, tmp_path):
    def unknown(meta):
        meta["optimizer"]["class"] = "Lion"

    assert_bad_file(rewrite(good_file, tmp_path / "o.fnn", edit_meta=unknown), "unknown optimizer")
    bad = rewrite(good_file, tmp_path / "o2.fnn", replace={"optimizer/exp_avg.npy": npy_bytes(np.zeros(5, np.float32))})
    assert_bad_file(bad, "optimizer state does not match")
    # the model alone still loads from a file whose optimizer part is unusable
    assert isinstance(fastnn.load(bad), nn.Sequential)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "nothing.fnn")


# --- what cannot be saved, and atomic writes --------------------------------------------------------------


class Double(nn.Module):
    """A layer written in Python: y = 2x."""

    def forward(self, x):
        return 2 * x

    def backward(self, grad_out):
        return 2 * grad_out


class MyLinear(nn.Linear):
    pass


@pytest.mark.parametrize("odd", ["python_layer", "subclass"])
def test_a_python_written_layer_cannot_be_saved(tmp_path, odd):
    layer = Double() if odd == "python_layer" else MyLinear(16, 16)
    model = nn.Sequential(nn.Linear(FEATURES, 16), layer, nn.Linear(16, 4))
    X, y = blobs(32)
    fastnn.fit(model, X, y, epochs=1, verbose=0)  # it trains fine
    target = tmp_path / "m.fnn"
    with pytest.raises(TypeError, match=f"{type(layer).__name__} is not a built-in layer"):
        fastnn.save(target, model)
    assert not target.exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_save_leaves_no_partial_file(tmp_path, monkeypatch, existing):
    """A write that fails half way (disk full) leaves the old file, or none, and no temporary file."""
    target = tmp_path / "m.fnn"
    old_model = mlp(hidden=8)
    if existing:
        fastnn.save(target, old_model)
    before = target.read_bytes() if existing else None
    calls = []
    real_writestr = zipfile.ZipFile.writestr

    def failing_writestr(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_writestr(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    model, opt = trained()
    with pytest.raises(OSError, match="No space left"):
        fastnn.save(target, model, opt)
    monkeypatch.undo()
    assert len(calls) == 3
    assert os.listdir(tmp_path) == (["m.fnn"] if existing else [])
    if existing:
        assert target.read_bytes() == before
        assert_state_equal(fastnn.load(target), old_model)


def _container_model():
    fastnn.manual_seed(6)
    return nn.Sequential(
        nn.Linear(4, 6),
        nn.Residual(nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 6))),
        nn.Concat(nn.Linear(6, 2), nn.Residual(nn.Sequential(nn.BatchNorm1d(6), nn.Tanh()), nn.Linear(6, 6))),
        nn.Linear(8, 3))


def test_containers_round_trip_with_optimizer(tmp_path):
    model = _container_model()
    X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 64)
    opt = optim.Adam(model.parameters(), lr=0.01)
    fastnn.fit(model, X, y, optimizer=opt, epochs=2, batch_size=16, verbose=0, seed=3)
    fastnn.save(tmp_path / "m.fnn", model, opt)
    loaded, lopt, _ = fastnn.load(tmp_path / "m.fnn", with_optimizer=True)
    assert repr(loaded) == repr(model)
    assert list(loaded.state_dict()) == list(model.state_dict())
    assert "2.1.shortcut.weight" in loaded.state_dict() and "1.body.1.running_var" in loaded.state_dict()
    model.eval()
    np.testing.assert_array_equal(loaded(X), model(X))
    for a, b in ((model, opt), (loaded, lopt)):  # training continues identically
        fastnn.fit(a, X, y, optimizer=b, epochs=1, batch_size=16, verbose=0, seed=4)
    np.testing.assert_array_equal(loaded.flat_parameters(), model.flat_parameters())


@pytest.mark.parametrize("edit, pattern", [
    (lambda a: a["children"][1][1]["children"].clear(), r"Residual children must be 'body'"),
    (lambda a: a["children"][1][1]["children"][0].__setitem__(0, "torso"), r"Residual children must be 'body'"),
    (lambda a: a["children"][1][1].pop("children"), r"Residual entry has no list of children"),
    (lambda a: a["children"][2][1].update(children="x"), r"Concat children must be \[name, entry\] pairs"),
    (lambda a: a["children"][0][1].update(children=[]), r"Linear entry must not have a list of children"),
    (lambda a: a["children"][2][1].update(children=[]), r"cannot rebuild Concat.*at least one branch"),
])
def test_malformed_container_entries(tmp_path, edit, pattern):
    src = tmp_path / "good.fnn"
    fastnn.save(src, _container_model())
    assert_bad_file(rewrite(src, tmp_path / "bad.fnn", edit_meta=lambda m: edit(m["architecture"])), pattern)
