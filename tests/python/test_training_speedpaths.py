"""The fast training mechanics: sparse first layer, saved layout, fused optimizer, threads."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import FAST

import sclibra
from sclibra import _settings, _train
from sclibra._module import Dropout, InputLinear, LIBRANet, SparseRows
from sclibra._optim import FusedAdam, PlateauSchedule


def _sparse(n=13, p=40, density=0.15, seed=0):
    return sp.random(n, p, density=density, format="csr", random_state=seed, dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# the sparse first layer
# ------------------------------------------------------------------------------------------------
def test_sparse_first_layer_forward_and_gradients_equal_dense_reference():
    torch.manual_seed(0)
    layer = InputLinear(40, 6)
    x = _sparse()
    # dense reference: nn.Linear's math with the (out, in) weight
    w_ref = layer.weight.detach().t().clone().requires_grad_(True)
    b_ref = layer.bias.detach().clone().requires_grad_(True)
    xd = torch.from_numpy(x.toarray())
    ref = torch.nn.functional.linear(xd, w_ref, b_ref)
    g = torch.randn_like(ref)
    ref.backward(g)
    xc = torch.sparse_csr_tensor(
        torch.from_numpy(x.indptr.astype(np.int64)),
        torch.from_numpy(x.indices.astype(np.int64)),
        torch.from_numpy(x.data),
        size=x.shape,
    )
    for inp in (SparseRows(x), xc, xd):
        layer.zero_grad()
        out = layer(inp)
        out.backward(g)
        np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), atol=1e-5)
        # stored (in, out): its gradient is the transpose of nn.Linear's
        np.testing.assert_allclose(layer.weight.grad.t().numpy(), w_ref.grad.numpy(), atol=1e-5)
        np.testing.assert_allclose(layer.bias.grad.numpy(), b_ref.grad.numpy(), atol=1e-5)


def test_sparse_rows_accepts_duplicates_and_other_dtypes():
    # duplicate column entries are summed, like a dense matrix built from them
    x = sp.csr_matrix(
        (np.array([1.0, 2.0, 3.0]), np.array([1, 1, 3]), np.array([0, 3, 3])), shape=(2, 5)
    )
    layer = InputLinear(5, 2)
    dense = torch.tensor(x.toarray(), dtype=torch.float32)
    np.testing.assert_allclose(
        layer(SparseRows(x)).detach().numpy(), layer(dense).detach().numpy(), atol=1e-6
    )
    assert SparseRows(x).csc.dtype == np.float32


def test_first_layer_initialisation_is_nn_linear_s():
    torch.manual_seed(3)
    ref = torch.nn.Linear(30, 8)
    torch.manual_seed(3)
    layer = InputLinear(30, 8)
    assert tuple(layer.weight.shape) == (30, 8)
    assert torch.equal(layer.weight.t(), ref.weight.detach())
    assert torch.equal(layer.bias, ref.bias.detach())


# ------------------------------------------------------------------------------------------------
# the saved layout is 0.1.0's
# ------------------------------------------------------------------------------------------------
class _OldInputLinear(torch.nn.Linear):
    """sclibra 0.1.0's first layer: nn.Linear's (out, in) weight."""

    def forward(self, x):
        if x.layout != torch.strided:
            return torch.addmm(self.bias, x, self.weight.t())
        return torch.nn.functional.linear(x, self.weight, self.bias)


def _old_net(n_in, n_out, **kw):
    """A LIBRANet whose first layers are 0.1.0's (same module tree, hence the same keys)."""
    net = LIBRANet(n_in, n_out, **kw)
    for holder in (net.encoder.net,):
        new = holder[0]
        old = _OldInputLinear(new.in_features, new.out_features)
        holder[0] = old
    return net


def test_state_dict_keys_and_shapes_are_those_of_0_1_0():
    kw = dict(n_layers=2, n_nodes=16, latent_dim=4)
    new, old = LIBRANet(40, 7, **kw), _old_net(40, 7, **kw)
    a, b = new.state_dict(), old.state_dict()
    assert list(a) == list(b)
    assert {k: tuple(v.shape) for k, v in a.items()} == {k: tuple(v.shape) for k, v in b.items()}
    assert a["encoder.net.0.weight"].shape == (16, 40)
    assert a["encoder.net.0.weight"].is_contiguous()


def test_old_layout_state_dict_loads_and_gives_identical_outputs(tmp_path):
    kw = dict(n_layers=2, n_nodes=16, latent_dim=4)
    torch.manual_seed(1)
    old = _old_net(40, 7, **kw).eval()
    torch.save(old.state_dict(), tmp_path / "weights.pt")
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    before = {k: v.clone() for k, v in state.items()}
    new = LIBRANet(40, 7, **kw)
    new.load_state_dict(state, strict=True)
    new.eval()
    for k in before:  # the caller's dict is not modified
        assert torch.equal(state[k], before[k])
    x = _sparse()
    xd = torch.from_numpy(x.toarray())
    with torch.no_grad():
        assert torch.equal(new(xd), old(xd))
        np.testing.assert_allclose(new(SparseRows(x)).numpy(), old(xd).numpy(), atol=1e-6)
    # and the other way round: what the new layout saves, the old one reads
    old2 = _old_net(40, 7, **kw).eval()
    old2.load_state_dict(new.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(old2(xd), new(xd))


def test_saved_model_round_trip_gives_identical_predictions(cite, tmp_path):
    rna, adt = cite
    held = rna[~rna.obs["is_train"].astype(bool)]
    # the first layer reading the (sparse) features is saved in nn.Linear's (out, in) layout:
    # the encoder's first layer, or the input PCA's when there is one
    for input_pca, key, shape in [
        (0, "encoder.net.0.weight", (64, rna.n_vars)),
        (30, "projection.linear.weight", (30, rna.n_vars)),
    ]:
        model = sclibra.LIBRA(**FAST, input_pca=input_pca)
        model.fit(rna, adt, train="is_train", max_epochs=3)
        path = model.save(tmp_path / f"m{input_pca}")
        state = torch.load(path / "weights.pt", weights_only=True)
        assert state[key].shape == shape
        again = sclibra.LIBRA.load(path)
        np.testing.assert_array_equal(again.predict(held).X, model.predict(held).X)


# ------------------------------------------------------------------------------------------------
# optimizer and threads
# ------------------------------------------------------------------------------------------------
def test_fused_adam_is_used_on_cpu_and_falls_back(monkeypatch):
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = _train.make_optimizer(p, learning_rate=1e-3, device=torch.device("cpu"))
    assert isinstance(opt, FusedAdam)
    assert opt.param_groups[0]["lr"] == 1e-3
    assert opt.weight_decay == 0.0
    # a device without the fused kernel gets torch.optim's default implementation
    opt = _train.make_optimizer(p, learning_rate=1e-3, device=torch.device("meta"))
    assert type(opt) is torch.optim.Adam
    assert not opt.defaults.get("fused")
    # parameters the kernel cannot take (integer), or a torch without the kernel: the same
    ints = [torch.zeros(3, dtype=torch.int64)]
    assert not FusedAdam.supports(ints, torch.device("cpu"))
    monkeypatch.delattr(torch, "_fused_adamw_")
    opt = _train.make_optimizer(
        p, learning_rate=1e-3, device=torch.device("cpu"), weight_decay=0.01
    )
    assert type(opt) is torch.optim.AdamW
    assert opt.defaults["weight_decay"] == 0.01


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_fused_adam_takes_torch_optims_fused_steps_exactly(weight_decay):
    # the same kernel and state as torch.optim.Adam / AdamW(fused=True): bit-identical weights
    # and moments, including a parameter that has no gradient on some steps (skipped, as torch)
    torch.manual_seed(0)
    x, y = torch.randn(32, 5), torch.randn(32, 2)
    results = []
    for ours in (False, True):
        torch.manual_seed(1)
        lin, extra = torch.nn.Linear(5, 2), torch.nn.Parameter(torch.randn(2))
        params = [*lin.parameters(), extra]
        start = [t.detach().clone() for t in params]
        if ours:
            opt = FusedAdam(params, lr=1e-2, weight_decay=weight_decay)
        else:
            cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
            opt = cls(params, lr=1e-2, weight_decay=weight_decay, fused=True)
        for i in range(20):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(lin(x), y)
            if i % 3 == 0:
                loss = loss + extra.square().sum()
            loss.backward()
            if i == 10:
                opt.param_groups[0]["lr"] = 1e-3  # what the schedule does
            opt.step()
        results.append([t.detach().clone() for t in params])
    for theirs, ours, before in zip(*results, start):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        assert not torch.equal(ours, before)  # every parameter, the sometimes-idle one too, moved


def test_fused_and_default_adam_take_the_same_steps():
    torch.manual_seed(0)
    x, y = torch.randn(32, 5), torch.randn(32, 2)
    results = []
    for fused in (False, True):
        torch.manual_seed(1)
        lin = torch.nn.Linear(5, 2)
        opt = torch.optim.Adam(lin.parameters(), lr=1e-2, fused=fused)
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(lin(x), y).backward()
            opt.step()
        results.append(lin.weight.detach().clone())
    np.testing.assert_allclose(results[0].numpy(), results[1].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("factor", "patience", "threshold", "min_lr"), [(0.1, 2, 1e-4, 1e-5), (0.5, 0, 3e-3, 1e-3)]
)
def test_plateau_schedule_lowers_the_rate_as_torchs_reduce_lr_on_plateau(
    factor, patience, threshold, min_lr
):
    rng = np.random.default_rng(0)
    # plateaus, tiny decreases (under and over the threshold), a NaN and a rise
    losses = np.concatenate(
        [
            1.0 - 0.01 * np.arange(5),
            np.full(6, 0.95),
            0.95 * (1 - 5e-5) ** np.arange(6),
            [np.nan, 2.0],
            0.9 * (1 - 5e-3) ** np.arange(8),
            0.5 + 0.01 * rng.random(30),
        ]
    )
    p = [torch.nn.Parameter(torch.zeros(1))]
    theirs_opt = torch.optim.SGD(p, lr=1e-2)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(
        theirs_opt,
        mode="min",
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode="rel",
        min_lr=min_lr,
    )
    ours_opt = FusedAdam(p, lr=1e-2)
    ours = PlateauSchedule(
        ours_opt, factor=factor, patience=patience, min_lr=min_lr, threshold=threshold
    )
    seen = []
    for loss in losses:
        theirs.step(float(loss))
        ours.step(float(loss))
        seen.append(ours_opt.param_groups[0]["lr"])
        assert ours_opt.param_groups[0]["lr"] == theirs_opt.param_groups[0]["lr"]
    assert seen[-1] == min_lr  # the schedule reached its floor
    assert len(set(seen)) >= 3  # and dropped more than once on the way


def test_training_does_not_import_the_compiler(tmp_path):
    # torch.optim imports torch._dynamo on its first optimizer (about a second per process):
    # a fit, predict, save and load in a fresh process never do
    code = (
        "import sys, numpy as np, sclibra\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.random((60, 12), dtype=np.float32); b = a[:, :4] * 2\n"
        "m = sclibra.LIBRA(n_models=2, seed=0, weight_decay=1e-4)\n"
        "m.fit(a, b, max_epochs=3, progress=False)\n"
        "m.predict(a); m.save(sys.argv[1]); sclibra.LIBRA.load(sys.argv[1])\n"
        "assert m.n_epochs_ == 3\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    ("cores", "quota", "flops", "busy", "expected"),
    [
        (2, None, 1e12, 0.0, 2),  # big model, idle machine: every core
        (2, None, 1e5, 0.0, 1),  # tiny model: one thread
        (2, None, 1e12, 1.2, 1),  # another job keeps a core busy
        (2, None, 1e12, 6.0, 1),  # overloaded: never fewer than 1
        (16, 4.0, 1e12, 0.0, 4),  # cgroup quota of 4 CPUs
        (16, 2.5, 1e12, 0.0, 3),  # a fractional quota rounds up
        (16, None, 1.5e8, 0.0, 3),  # size-limited: one thread per FLOPS_PER_THREAD
        (8, None, 1e12, 2.4, 6),  # 2.4 busy CPUs of 8 leave 6 (rounded)
        (1, None, 1e12, 0.0, 1),
    ],
)
def test_thread_decision(cores, quota, flops, busy, expected):
    assert _settings.choose_num_threads(cores, quota, flops, busy) == expected


def test_cgroup_quota_is_read(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert _settings.cpu_quota(str(tmp_path)) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _settings.cpu_quota(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert _settings.cpu_quota(str(v1)) == 3.0
    assert _settings.cpu_quota(str(tmp_path / "none")) is None


def test_busy_cores_do_not_count_this_process_s_own_threads(tmp_path):
    loadavg = tmp_path / "loadavg"
    tasks = tmp_path / "task"
    for tid, state in [("101", "R"), ("102", "R"), ("103", "S"), ("104", "R")]:
        (tasks / tid).mkdir(parents=True)
        # a command name with spaces and a parenthesis must not shift the state field
        (tasks / tid / "stat").write_text(f"{tid} (py (worker) 1) {state} 1 2 3\n")
    # 4 runnable tasks on the machine, 3 of them this process's threads: one other job
    loadavg.write_text("1.80 1.20 1.00 4/300 12345\n")
    assert _settings.own_running_threads(str(tasks)) == 3
    assert _settings.busy_cores(str(loadavg), str(tasks)) == 1.0
    # this process's spinning thread pool alone keeps the load up: nobody else is busy
    loadavg.write_text("1.80 1.20 1.00 3/300 12345\n")
    assert _settings.busy_cores(str(loadavg), str(tasks)) == 0.0
    # the load average bounds it: a burst of runnable tasks that has not lasted
    loadavg.write_text("0.40 0.20 0.10 9/300 12345\n")
    assert _settings.busy_cores(str(loadavg), str(tasks)) == 0.4
    assert _settings.busy_cores(str(tmp_path / "none"), str(tasks)) == 0.0
    assert _settings.own_running_threads(str(tmp_path / "none")) == 1


def test_threads_setting_env_and_restore(monkeypatch, cite):
    monkeypatch.setenv("SCLIBRA_NUM_THREADS", "3")
    assert _settings._env_threads() == 3
    monkeypatch.setenv("SCLIBRA_NUM_THREADS", "auto")
    assert _settings._env_threads() is None
    monkeypatch.setattr(sclibra.settings, "num_threads", 1)
    assert _settings.training_threads(1e15) == 1
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n))[1])
    before = torch.get_num_threads()
    rna, adt = cite
    sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", max_epochs=1)
    assert torch.get_num_threads() == before
    if before != 1:
        assert seen[0] == 1
        assert seen[-1] == before


# ------------------------------------------------------------------------------------------------
# training with the fast path
# ------------------------------------------------------------------------------------------------
def _sparse_pair(n=300, p=200, q=5, seed=0):
    rng = np.random.default_rng(seed)
    a = sp.random(n, p, density=0.05, format="csr", random_state=seed, dtype=np.float32)
    b = (a @ rng.standard_normal((p, q))).astype(np.float32)
    return a, b


def _train_pair(net, ma, mb, **schedule):
    """``train_module`` on cells 0-249 of a :func:`_sparse_pair`, validated on 250-299, with a
    small schedule (``schedule`` overrides its fields)."""
    base = dict(
        batch_size=50, learning_rate=1e-3, max_epochs=2, early_stopping_patience=5,
        lr_patience=5, lr_factor=0.1, min_lr=1e-5,
    )  # fmt: skip
    return _train.train_module(
        net, ma, mb, np.arange(250), np.arange(250, 300), _train.Schedule(**{**base, **schedule}),
        seed=0, device=torch.device("cpu"), progress=False,
    )  # fmt: skip


def test_same_seed_gives_the_same_history_sparse_and_dense(cite):
    a, b = _sparse_pair()
    kw = dict(n_layers=1, n_nodes=16, latent_dim=4, batch_size=32, seed=5)
    h1 = sclibra.LIBRA(**kw).fit(a, b, max_epochs=4).history
    h2 = sclibra.LIBRA(**kw).fit(a, b, max_epochs=4).history
    cols = ["train_loss", "val_loss", "lr"]
    assert h1[cols].equals(h2[cols])
    rna, adt = cite
    m1 = sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", max_epochs=3)
    m2 = sclibra.LIBRA(**FAST).fit(rna, adt, train="is_train", max_epochs=3)
    assert m1.history[cols].equals(m2.history[cols])


def test_sparse_and_dense_input_train_alike():
    a, b = _sparse_pair()
    kw = dict(n_layers=1, n_nodes=16, latent_dim=4, batch_size=32, seed=5)
    hs = sclibra.LIBRA(**kw).fit(a, b, max_epochs=5).history
    hd = sclibra.LIBRA(**kw).fit(a.toarray(), b, max_epochs=5).history
    np.testing.assert_allclose(hs["train_loss"], hd["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(hs["val_loss"], hd["val_loss"], rtol=1e-4)
    assert hs["val_loss"].iloc[-1] < hs["val_loss"].iloc[0]


def test_row_source_caches_small_dense_and_reads_large_per_batch(monkeypatch):
    from sclibra._data import as_matrix

    dense = as_matrix(np.arange(12, dtype=np.float32).reshape(4, 3))
    src = _train.RowSource(dense, torch.device("cpu"))
    assert src.cached is not None
    np.testing.assert_array_equal(src(np.array([2, 0])).numpy(), [[6, 7, 8], [0, 1, 2]])
    monkeypatch.setattr(_train, "DENSE_CACHE_BYTES", 8)
    src = _train.RowSource(dense, torch.device("cpu"))
    assert src.cached is None
    np.testing.assert_array_equal(src(np.array([2, 0])).numpy(), [[6, 7, 8], [0, 1, 2]])
    sparse = as_matrix(_sparse(6, 30, 0.05))
    block = _train.RowSource(sparse, torch.device("cpu"), sparse=True)(np.array([1, 4]))
    assert isinstance(block, SparseRows)
    assert block.shape == (2, 30)


def test_minibatches_prepared_ahead_are_the_same_in_the_same_order():
    from sclibra._data import as_matrix

    x = as_matrix(_sparse(23, 30, 0.2))
    y = as_matrix(np.arange(23 * 2, dtype=np.float32).reshape(23, 2))
    xs = _train.RowSource(x, torch.device("cpu"), sparse=True)
    ys = _train.RowSource(y, torch.device("cpu"))
    order = np.random.default_rng(0).permutation(23)
    plain = list(_train.Minibatches(xs, ys, order, 5, ahead=False))
    ahead = list(_train.Minibatches(xs, ys, order, 5, ahead=True))
    assert [len(b) for b, _, _ in ahead] == [5, 5, 5, 5, 3]
    for (b1, x1, y1), (b2, x2, y2) in zip(plain, ahead, strict=True):
        np.testing.assert_array_equal(b1, b2)
        assert (x1.csc != x2.csc).nnz == 0
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    # an error while preparing a minibatch in the worker reaches the caller
    calls = []

    def failing(idx):
        calls.append(len(idx))
        if len(calls) == 3:
            raise OSError("disk went away")
        return xs(idx)

    with pytest.raises(OSError, match="disk went away"):
        list(_train.Minibatches(failing, ys, order, 5, ahead=True))


def test_minibatches_are_prepared_ahead_only_with_per_batch_work_and_a_spare_core(monkeypatch):
    from sclibra._data import as_matrix

    cpu = torch.device("cpu")
    sparse = _train.RowSource(as_matrix(_sparse(6, 30, 0.05)), cpu, sparse=True)
    cached = _train.RowSource(as_matrix(np.ones((6, 2), dtype=np.float32)), cpu)
    monkeypatch.setattr(_train, "cpu_quota", lambda: None)
    monkeypatch.setattr(_train, "usable_cores", lambda: 2)
    assert _train.prefetch_minibatches(sparse, cached, 1)
    assert not _train.prefetch_minibatches(cached, cached, 1)  # nothing to prepare
    assert not _train.prefetch_minibatches(sparse, cached, 2)  # no spare core
    monkeypatch.setattr(_train, "cpu_quota", lambda: 1.0)
    assert not _train.prefetch_minibatches(sparse, cached, 1)  # the cgroup quota allows one CPU


def test_training_with_minibatches_prepared_ahead_is_identical(monkeypatch):
    a, b = _sparse_pair()
    kw = dict(n_layers=1, n_nodes=16, latent_dim=4, batch_size=32, seed=5)
    histories = []
    for ahead in (False, True):
        monkeypatch.setattr(_train, "prefetch_minibatches", lambda *args, on=ahead: on)
        m = sclibra.LIBRA(**kw).fit(a, b, max_epochs=3)
        histories.append(m.history[["train_loss", "val_loss"]])
    assert histories[0].equals(histories[1])


# ------------------------------------------------------------------------------------------------
# ensemble members side by side
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_models", "device", "threads", "expected"),
    [
        (3, "cpu", 2, (3, 1)),  # two cores: all three at once, sharing them (no lone third)
        (4, "cpu", 2, (2, 1)),  # two even rounds of two
        (5, "cpu", 2, (2, 1)),  # more than two per thread: rounds of two
        (5, "cpu", 4, (5, 1)),  # uneven: all at once
        (3, "cpu", 8, (3, 2)),  # more threads than members: split among them
        (3, "cpu", 1, (1, 0)),  # one thread (busy machine, or settings.num_threads=1)
        (1, "cpu", 8, (1, 0)),  # a single model
        (3, "meta", 8, (1, 0)),  # not CPU: in turn
    ],
)
def test_member_workers(monkeypatch, n_models, device, threads, expected):
    monkeypatch.setattr(_train, "training_threads", lambda flops: threads)
    got = _train.member_workers(n_models, torch.device(device), 1e9)
    assert got == expected


def test_members_side_by_side_train_exactly_as_in_turn(monkeypatch, cite):
    rna, adt = cite
    kw = {**FAST, "n_models": 3, "seed": 4}
    fits, calls = {}, []
    real = _train.train_side_by_side

    def recording(*args, **kwargs):
        calls.append(kwargs["threads"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sclibra._model, "train_side_by_side", recording)
    for threads in (1, 2):
        monkeypatch.setattr(_train, "training_threads", lambda flops, n=threads: n)
        fits[threads] = sclibra.LIBRA(**kw).fit(rna, adt, train="is_train", max_epochs=6)
        fits[f"calls{threads}"] = list(calls)
    seq, par = fits[1], fits[2]
    assert fits["calls1"] == []  # one thread: in turn
    assert fits["calls2"] == [1]  # two: side by side, one thread each
    cols = ["member", "epoch", "train_loss", "val_loss", "lr"]
    assert seq.history[cols].equals(par.history[cols])
    np.testing.assert_array_equal(seq.predict(rna).X, par.predict(rna).X)
    assert seq.train_cells_.equals(par.train_cells_)
    # the caller's global generator is left as it was by training
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sclibra.LIBRA(**kw).fit(rna, adt, train="is_train", max_epochs=2)
    assert torch.equal(torch.rand(3), expected)


def test_callback_side_by_side_runs_in_the_calling_thread_and_stops_every_member(monkeypatch, cite):
    import threading

    rna, adt = cite
    monkeypatch.setattr(_train, "training_threads", lambda flops: 2)
    seen = []

    def callback(model, epoch, train_loss, val_loss):
        seen.append((threading.current_thread() is threading.main_thread(), model.module, epoch))
        members.append(model.training_member_)
        # stop once both running members have reported (under load one may run ahead)
        return len(seen) >= 7 and len(set(members)) == 2

    members = []

    # four members on two threads: two rounds of two (member_workers)
    m = sclibra.LIBRA(**{**FAST, "n_models": 4}).fit(
        rna, adt, train="is_train", max_epochs=50, callback=callback
    )
    assert all(main for main, _, _ in seen)
    assert len({id(module) for _, module, _ in seen}) == 2  # the two members running
    # the callback is told which member each epoch is of, consistently with model.module
    assert set(members) == {0, 1}
    by_member = {k: id(module) for k, (_, module, _) in zip(members, seen)}
    assert all(by_member[k] == id(module) for k, (_, module, _) in zip(members, seen))
    assert m.training_member_ is None  # only set during a callback
    # both running members stopped after their current epoch; the others never started
    assert m.stopped_by_ == "callback"
    assert m.history["member"].nunique() == 2
    # the callback said stop at the first epoch with 7 seen and both members reported
    both_seen = max(members.index(0), members.index(1)) + 1
    assert len(seen) == max(7, both_seen)
    # each epoch waits for the callback's answer: at most the other member's last epoch was
    # trained without the callback seeing it (its answer was the stop)
    assert len(seen) <= len(m.history) <= len(seen) + 1
    assert m.predict(rna[:5]).X.shape == (5, adt.n_vars)


def test_side_by_side_error_stops_the_others_and_is_raised():
    import threading
    import time

    stopped = threading.Event()

    def train_one(k, on_epoch):
        if k == 1:
            raise ValueError("member 1 failed")
        for epoch in range(1, 1_000):  # up to 10 s of "epochs"
            time.sleep(0.01)
            if on_epoch(epoch, 1.0, 1.0):
                stopped.set()
                break
        return None

    with pytest.raises(ValueError, match="member 1 failed"):
        _train.train_side_by_side(
            train_one, 3, 2, threads=1, check=lambda r: None, progress=False, desc="x"
        )
    assert stopped.is_set()  # member 0 saw the stop at the end of an epoch


def test_non_finite_loss_is_reported():
    a, b = _sparse_pair()
    b = b * np.float32(1e30)  # finite targets whose squared error overflows float32
    model = sclibra.LIBRA(n_layers=1, n_nodes=8, latent_dim=2, seed=0)
    with pytest.raises(FloatingPointError, match="training loss became"):
        model.fit(a, b, max_epochs=2)
    assert not model.is_trained


def test_adamw_and_custom_loss_hooks():
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = _train.make_optimizer(
        p, learning_rate=1e-3, device=torch.device("cpu"), weight_decay=0.01
    )
    assert isinstance(opt, FusedAdam)
    assert opt.weight_decay == 0.01
    a, b = _sparse_pair()
    from sclibra._data import as_matrix

    ma, mb = as_matrix(a), as_matrix(b)
    net = LIBRANet(a.shape[1], b.shape[1], n_layers=1, n_nodes=8, latent_dim=2)
    calls = []

    def l1(out, tgt):
        calls.append(1)
        return torch.mean(torch.abs(out - tgt))

    res = _train_pair(net, ma, mb, loss=l1)
    assert len(calls) == 2 * (5 + 1)  # 5 steps and 1 validation batch per epoch
    with torch.no_grad():
        x = torch.from_numpy(b[250:]).float()
        pred = net(torch.from_numpy(a[250:].toarray()))
        assert res.best_loss == pytest.approx(  # the module ends with its best weights
            float(torch.mean(torch.abs(pred - x))), rel=1e-5
        )


def test_min_delta_stops_on_negligible_improvements(monkeypatch):
    from sclibra._data import as_matrix

    a, b = _sparse_pair()
    ma, mb = as_matrix(a), as_matrix(b)
    # a validation loss that keeps falling by 0.005 % per epoch: every epoch is a new best
    losses = iter(1.0 * (1 - 5e-5) ** np.arange(100))
    monkeypatch.setattr(_train, "evaluate_loss", lambda *a, **k: float(next(losses)))

    def run(min_delta):
        net = LIBRANet(a.shape[1], b.shape[1], n_layers=1, n_nodes=8, latent_dim=2)
        return _train_pair(
            net, ma, mb, max_epochs=12, early_stopping_patience=2, min_delta=min_delta
        )

    res = run(1e-4)  # decreases of 5e-5 do not reset the patience of 2 epochs
    assert res.stopped_by == "early_stopping"
    assert res.n_epochs == 3
    assert res.best_epoch == 3  # but the best weights follow every decrease
    res = run(0.0)  # the published rule: any decrease counts
    assert res.stopped_by == "max_epochs"
    assert res.n_epochs == 12
    with pytest.raises(sclibra.SclibraError, match="min_delta must be in"):
        sclibra.LIBRA(n_models=1).fit(a, b, min_delta=1.5)
    # the learning-rate schedule counts the same decrease as progress, at least torch's 1e-4
    seen = []
    real = _train.PlateauSchedule

    class Recording(real):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["threshold"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_train, "PlateauSchedule", Recording)
    for min_delta in (0.0, 1e-4, 3e-3):
        losses = iter(1.0 * (1 - 5e-5) ** np.arange(100))
        run(min_delta)
    assert seen == [1e-4, 1e-4, 3e-3]


def test_cpu_dropout_mask_rate_scale_gradient_and_seed():
    layer = Dropout(0.2)
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(3)
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.2) < 0.005  # 200,000 draws: sd of the rate is 0.0009
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.8))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(sum)/dx = the scaled mask
    # every 16-bit lane of the draws is used: no column or lane pattern in the mask
    lanes = (y.detach() == 0).float().view(-1, 4).mean(0)
    assert torch.all((lanes - 0.2).abs() < 0.01)
    torch.manual_seed(3)
    assert torch.equal(layer(torch.ones(400, 500)), y.detach())
    torch.manual_seed(4)
    assert not torch.equal(layer(torch.ones(400, 500)), y.detach())
    layer.eval()
    assert layer(x) is x
    assert Dropout(0.0).train()(x) is x
    torch.manual_seed(0)
    rates = [(Dropout(p)(torch.ones(100_000)) == 0).float().mean().item() for p in (0.05, 0.5)]
    assert abs(rates[0] - 0.05) < 0.004
    assert abs(rates[1] - 0.5) < 0.006


# ------------------------------------------------------------------------------------------------
# wide sparse targets: the closed-form MSE of a factorised output layer
# ------------------------------------------------------------------------------------------------
def test_closed_form_mse_equals_dense_mse_and_its_gradients():
    from sclibra._module import FactorOutput

    torch.manual_seed(0)
    h = torch.randn(32, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(900, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(900, dtype=torch.float64, requires_grad=True)
    y = _sparse(32, 900, density=0.02, seed=1)
    target = _train.SparseTarget(y, torch.device("cpu"), dtype=torch.float64)
    assert target.numel() == 32 * 900
    assert torch.equal(target.dense(), torch.from_numpy(y.toarray()).double())
    closed = _train.mse(FactorOutput(h, w, b), target)
    dense = torch.nn.functional.mse_loss(h @ w.T + b, torch.from_numpy(y.toarray()).double())
    assert closed.item() == pytest.approx(dense.item(), rel=1e-12)
    for g1, g2 in zip(
        torch.autograd.grad(closed, [h, w, b]), torch.autograd.grad(dense, [h, w, b])
    ):
        assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-12)
    # the gather path (non-CPU devices) gives the same value
    csr = target.csr
    target.rows = torch.from_numpy(np.repeat(np.arange(32), np.diff(csr.indptr)).astype(np.int64))
    target.cols = torch.from_numpy(csr.indices.astype(np.int64))
    target.values = torch.from_numpy(csr.data)
    gathered = _train.mse(FactorOutput(h, w, b), target)
    assert gathered.item() == pytest.approx(dense.item(), rel=1e-12)
    # the other combinations multiply out or densify
    mixed = _train.mse(FactorOutput(h, w, b), torch.from_numpy(y.toarray()).double())
    assert mixed.item() == pytest.approx(dense.item(), rel=1e-12)


def test_factorised_decoder_emits_factors_only_in_the_block():
    net = LIBRANet(20, 12_000, n_layers=1, n_nodes=16, latent_dim=3, output_rank=4)
    x = torch.randn(5, 20)
    net.eval()
    with torch.no_grad():
        full = net(x)
        with _train.factor_outputs(net, True):
            h, w, b = net(x)
        assert not net.decoder.emit_factors
        with _train.factor_outputs(net, False):
            assert torch.equal(net(x), full)
    assert h.shape == (5, 4)
    assert w.shape == (12_000, 4)
    assert torch.allclose(torch.relu(h @ w.T + b), full, atol=1e-6)  # relu output: pre-activation


def test_closed_form_is_used_only_for_mse_sparse_targets_and_factorised_outputs():
    from sclibra._data import as_matrix

    wide = as_matrix(_sparse(10, 12_000, density=0.01))
    narrow_dense = as_matrix(np.zeros((10, 12_000), dtype=np.float32))
    factorised = LIBRANet(20, 12_000, n_layers=1, n_nodes=16, latent_dim=3, output_rank=4)
    full = LIBRANet(20, 12_000, n_layers=1, n_nodes=16, latent_dim=3)
    softplus = LIBRANet(20, 12_000, 1, 16, 0.3, 0.2, 3, "softplus", output_rank=4)
    assert _train.closed_form_mse(factorised, wide, "mse")
    assert not _train.closed_form_mse(factorised, wide, "bce")
    assert not _train.closed_form_mse(factorised, narrow_dense, "mse")
    assert not _train.closed_form_mse(full, wide, "mse")
    assert not _train.closed_form_mse(softplus, wide, "mse")


def test_wide_sparse_target_trains_in_closed_form_like_the_dense_loss(monkeypatch):
    """Same seed, same data: the closed-form fit follows the dense-loss fit of a linear output."""
    rng = np.random.default_rng(0)
    a = rng.random((120, 30)).astype(np.float32)
    b = sp.random(120, 11_000, density=0.01, format="csr", random_state=1, dtype=np.float32)
    kw = {"n_models": 1, "input_pca": 0, "latent_pca": 0.0, "output_activation": "linear",
          "seed": 0, "n_nodes": 64, "latent_dim": 4}  # fmt: skip
    calls = []
    real = _train.mse

    def spy(out, target):
        calls.append(type(target).__name__)
        return real(out, target)

    monkeypatch.setattr(_train, "mse", spy)
    closed = sclibra.LIBRA(**kw).fit(a, b, progress=False, max_epochs=4)
    assert set(calls) == {"SparseTarget"}
    monkeypatch.setattr(_train, "closed_form_mse", lambda *args: False)
    calls.clear()
    dense = sclibra.LIBRA(**kw).fit(a, b, progress=False, max_epochs=4)
    assert set(calls) == {"Tensor"}
    np.testing.assert_allclose(closed.history["train_loss"], dense.history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(closed.predict(a).X, dense.predict(a).X, rtol=1e-3, atol=1e-5)


def test_callback_in_turn_is_told_the_member(monkeypatch, cite):
    rna, adt = cite
    monkeypatch.setattr(_train, "training_threads", lambda flops: 1)  # members in turn
    seen = []

    def callback(model, epoch, train_loss, val_loss):
        seen.append((model.training_member_, epoch))

    sclibra.LIBRA(**{**FAST, "n_models": 2}).fit(
        rna, adt, train="is_train", max_epochs=3, callback=callback
    )
    assert seen == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]


def test_patience_after_is_short_only_for_a_model_that_stopped_learning_at_once():
    from sclibra._recipe import MIN_PATIENCE, MIN_PATIENCE_STEPS

    assert (MIN_PATIENCE, MIN_PATIENCE_STEPS) == (5, 100)
    # 50 steps per epoch: an improvement in the first 5 epochs waits 5, any later one 20
    wait = [_train.patience_after(e, 20, True, 50) for e in (1, 4, 5, 6, 13, 20, 21, 400)]
    assert wait == [5, 5, 5, 20, 20, 20, 20, 20]
    # epochs of few steps: at least 100 steps (13 steps per epoch: 8 epochs; 3 steps: 34 -> 20)
    assert [_train.patience_after(e, 20, True, 13) for e in (1, 8, 9, 30)] == [8, 8, 20, 20]
    assert [_train.patience_after(e, 20, True, 3) for e in (1, 30)] == [20, 20]
    assert [_train.patience_after(e, 20, False, 50) for e in (1, 4, 400)] == [20, 20, 20]
    assert _train.patience_after(1, 3, True, 50) == 3  # never longer than early_stopping_patience


@pytest.mark.parametrize(
    ("adaptive", "batch_size", "improving_until", "n_epochs"),
    [
        (True, 10, 1, 1 + 5),  # 25 steps per epoch, no progress after epoch 1: 5 epochs, not 20
        (False, 10, 1, 1 + 20),  # the published rule
        (True, 10, 5, 5 + 5),  # last improvement at epoch 5: still the short wait
        (True, 10, 8, 8 + 20),  # a model that learned for 8 epochs waits the full patience
        (True, 10, 30, 30 + 20),  # late improvements get the full patience
        (False, 10, 30, 30 + 20),
        (True, 25, 1, 1 + 10),  # 10 steps per epoch: 100 steps are 10 epochs
        (True, 50, 1, 1 + 20),  # 5 steps per epoch: the full patience
    ],
)
def test_adaptive_patience_stops_a_model_that_stopped_improving(
    monkeypatch, adaptive, batch_size, improving_until, n_epochs
):
    from sclibra._data import as_matrix

    a, b = _sparse_pair()
    ma, mb = as_matrix(a), as_matrix(b)
    # a validation loss that halves every epoch up to `improving_until`, then stays flat
    losses = iter(0.5 ** np.minimum(np.arange(1, 200), improving_until))
    monkeypatch.setattr(_train, "evaluate_loss", lambda *a, **k: float(next(losses)))
    net = LIBRANet(a.shape[1], b.shape[1], n_layers=1, n_nodes=8, latent_dim=2)
    res = _train_pair(
        net, ma, mb, batch_size=batch_size, max_epochs=100, early_stopping_patience=20,
        lr_patience=15, min_delta=1e-3, adaptive_patience=adaptive,
    )  # fmt: skip
    assert res.stopped_by == "early_stopping"
    assert (res.n_epochs, res.best_epoch) == (n_epochs, improving_until)


def test_adaptive_patience_is_the_default_and_published_waits_the_full_patience():
    assert sclibra.LIBRA().fit_defaults["adaptive_patience"] is True
    for preset in ("published", "0.1.0"):
        assert sclibra.LIBRA(preset=preset).fit_defaults["adaptive_patience"] is False
    with pytest.raises(sclibra.SclibraError, match="adaptive_patience must be True or False"):
        sclibra.LIBRA(n_models=1).fit(*_sparse_pair(), adaptive_patience="yes")


def _regularised(seed=0, n_obs=300):
    from sclibra._recipe import LatentPCARegularised

    torch.manual_seed(seed)
    net = LIBRANet(20, 5, n_layers=1, n_nodes=16, latent_dim=4)
    scores = np.random.default_rng(seed).standard_normal((n_obs, 3)).astype(np.float32)
    return LatentPCARegularised(net, scores, weight=5.0)


def _warmup_schedule(steps, batch_size=10):
    return _train.Schedule(
        batch_size=batch_size, learning_rate=1e-2, max_epochs=1, early_stopping_patience=1,
        lr_patience=1, lr_factor=0.1, min_lr=1e-5, latent_warmup=steps,
    )  # fmt: skip


def test_latent_warmup_trains_the_encoder_and_head_on_the_regulariser_alone(monkeypatch):
    from sclibra._data import as_matrix

    a = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
    # the PC scores the latent must predict: a linear function of A, so they can be learned
    mod = _regularised()
    w = np.random.default_rng(2).standard_normal((20, 3)).astype(np.float32)
    mod.scores = torch.from_numpy(a @ w / 4)
    xs = _train.RowSource(as_matrix(a), torch.device("cpu"))
    train = np.arange(250)
    before = {k: v.detach().clone() for k, v in mod.state_dict().items()}

    def loss_on(rows):
        mod.eval()
        with torch.no_grad():
            return float(mod.warmup_loss(xs(rows), rows))

    start = loss_on(train)
    calls = []
    real = mod.warmup_loss
    monkeypatch.setattr(
        mod, "warmup_loss", lambda x, rows: calls.append(len(rows)) or real(x, rows)
    )
    _train.warm_up(
        mod, xs, train, _warmup_schedule(57), np.random.default_rng(0), torch.device("cpu")
    )
    # exactly the steps asked, in minibatches of training cells (25 per epoch, then on)
    assert len(calls) == 57
    assert set(calls) == {10}
    assert loss_on(train) < 0.5 * start
    changed = {k for k, v in mod.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("net.encoder.") for k in changed)
    assert any(k.startswith("head.") for k in changed)
    assert not any(k.startswith("net.decoder.") for k in changed)  # B is never read


def test_latent_warmup_reads_only_training_cells():
    from sclibra._data import as_matrix

    a = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
    seen = []
    xs = _train.RowSource(as_matrix(a), torch.device("cpu"))
    mod = _regularised()
    real = mod.warmup_loss
    mod.warmup_loss = lambda x, rows: seen.extend(rows.tolist()) or real(x, rows)
    train = np.arange(100, 180)
    _train.warm_up(
        mod, xs, train, _warmup_schedule(20), np.random.default_rng(0), torch.device("cpu")
    )
    assert set(seen) == set(train.tolist())  # every training cell, no validation cell


@pytest.mark.parametrize("steps", [0, 5])
def test_latent_warmup_leaves_other_modules_and_zero_steps_alone(steps):
    from sclibra._data import as_matrix

    a = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
    xs = _train.RowSource(as_matrix(a), torch.device("cpu"))
    torch.manual_seed(0)
    plain = LIBRANet(20, 5, n_layers=1, n_nodes=16, latent_dim=4)  # no warmup_loss
    mod = _regularised() if steps == 0 else plain
    before = {k: v.clone() for k, v in mod.state_dict().items()}
    _train.warm_up(
        mod,
        xs,
        np.arange(250),
        _warmup_schedule(steps),
        np.random.default_rng(0),
        torch.device("cpu"),
    )
    assert all(torch.equal(v, before[k]) for k, v in mod.state_dict().items())


def test_latent_warmup_is_the_default_and_changes_the_model_only_with_the_regulariser(cite):
    rna, adt = cite
    assert sclibra.LIBRA().fit_defaults["latent_warmup"] == 100
    for preset in ("published", "0.1.0"):
        assert sclibra.LIBRA(preset=preset).fit_defaults["latent_warmup"] == 0
    with pytest.raises(sclibra.SclibraError, match="latent_warmup must be an integer >= 0"):
        sclibra.LIBRA(n_models=1).fit(*_sparse_pair(), latent_warmup=-1)
    kw = {**FAST, "n_models": 1, "latent_pca": 5.0}
    fit = {"train": "is_train", "max_epochs": 3, "progress": False}

    def latent(model_kw, **fit_kw):
        m = sclibra.LIBRA(**model_kw).fit(rna, adt, **fit, **fit_kw)
        return m.get_latent(rna)

    warm, cold = latent(kw, latent_warmup=50), latent(kw, latent_warmup=0)
    assert not np.allclose(warm, cold)
    np.testing.assert_array_equal(warm, latent(kw, latent_warmup=50))  # deterministic
    # without the regulariser there is nothing to warm up: the same model either way
    off = {**kw, "latent_pca": 0.0}
    np.testing.assert_array_equal(latent(off, latent_warmup=50), latent(off, latent_warmup=0))


def test_stop_at_min_lr_ends_training_at_the_schedules_last_drop(cite):
    rna, adt = cite
    assert sclibra.LIBRA().fit_defaults["stop_at_min_lr"] is True
    for preset in ("published", "0.1.0"):
        assert sclibra.LIBRA(preset=preset).fit_defaults["stop_at_min_lr"] is False
    # a schedule that drops fast: 1e-3 -> 1e-4 -> 1e-5 (the floor) after 1-epoch plateaus
    fit = {
        "train": "is_train", "progress": False, "max_epochs": 80, "lr_patience": 1,
        "min_lr": 1e-5, "early_stopping_patience": 30, "adaptive_patience": False,
    }  # fmt: skip
    kw = {**FAST, "n_models": 1}
    on = sclibra.LIBRA(**kw).fit(rna, adt, stop_at_min_lr=True, **fit)
    off = sclibra.LIBRA(**kw).fit(rna, adt, stop_at_min_lr=False, **fit)
    h_on, h_off = on.history, off.history
    assert on.stopped_by_ == "early_stopping"
    assert sorted(set(h_on["lr"])) == [1e-4, 1e-3]  # never trained at the floor
    assert 1e-5 in set(h_off["lr"])  # trained on at the floor
    # the same run up to the stop, which is the epoch whose plateau reached the floor
    n = len(h_on)
    pd.testing.assert_frame_equal(
        h_on.drop(columns="seconds"), h_off.drop(columns="seconds").iloc[:n]
    )
    assert h_off["lr"].iloc[n] == 1e-5
    assert on.best_val_loss_ == pytest.approx(h_on["val_loss"].min())
    with pytest.raises(sclibra.SclibraError, match="stop_at_min_lr must be True or False"):
        sclibra.LIBRA(**kw).fit(rna, adt, stop_at_min_lr="yes", **fit)


def test_latent_warmup_runs_on_the_sparse_first_layer():
    from sclibra._data import as_matrix

    a, b = _sparse_pair()  # sparse A read by the first layer itself (no input PCA)
    kw = {"n_models": 1, "n_nodes": 16, "latent_dim": 4, "input_pca": 0, "seed": 0}
    fit = {"max_epochs": 2, "progress": False}
    warm = sclibra.LIBRA(**kw).fit(a, b, latent_warmup=30, **fit)
    cold = sclibra.LIBRA(**kw).fit(a, b, latent_warmup=0, **fit)
    assert warm.input_pcs_ == 0
    assert _train.use_sparse_path(as_matrix(a), torch.device("cpu"))
    assert np.isfinite(warm.get_latent(a)).all()
    assert not np.allclose(warm.get_latent(a), cold.get_latent(a))


def test_latent_warmup_refuses_a_loss_that_is_not_finite():
    from sclibra._data import as_matrix

    a = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
    xs = _train.RowSource(as_matrix(a), torch.device("cpu"))
    mod = _regularised()
    real = mod.warmup_loss
    mod.warmup_loss = lambda x, rows: real(x, rows) * float("nan")
    with pytest.raises(FloatingPointError, match="warm-up loss became nan; try a lower"):
        _train.warm_up(
            mod, xs, np.arange(250), _warmup_schedule(3), np.random.default_rng(0),
            torch.device("cpu"),
        )  # fmt: skip


def test_weight_average_updates_as_a_moving_average_and_swaps_in_place():
    lin = torch.nn.Linear(3, 2)
    frozen = torch.nn.Linear(2, 2)
    frozen.weight.requires_grad_(False)  # a frozen map (the input PCA) is not averaged
    mod = torch.nn.Sequential(lin, frozen)
    w0 = lin.weight.detach().clone()
    avg = _train.WeightAverage(mod, 0.9)
    assert len(avg.params) == 3  # lin.weight, lin.bias, frozen.bias
    for t in range(1, 16):  # the training weights move to w0 + t at step t
        with torch.no_grad():
            lin.weight.add_(1.0)
        avg.update()
        if t <= 10:  # the mean of every step so far (the random start is dropped) ...
            expected = w0 + (t + 1) / 2
        else:  # ... until 1 / (1 - decay) steps, then the moving average
            expected = 0.9 * expected + 0.1 * (w0 + t)
        np.testing.assert_allclose(avg.average[0].numpy(), expected.numpy(), rtol=1e-5)
    w_last = lin.weight.detach().clone()
    avg.swap()
    np.testing.assert_allclose(lin.weight.detach().numpy(), expected.numpy(), rtol=1e-5)
    avg.swap()
    assert torch.equal(lin.weight.detach(), w_last)  # twice: the training weights are back


def test_ema_decay_validates_and_keeps_the_averaged_weights(monkeypatch):
    from sclibra._data import as_matrix

    a, b = _sparse_pair()
    ma, mb = as_matrix(a), as_matrix(b)
    x_val = torch.from_numpy(a[250:].toarray())
    y_val = torch.from_numpy(b[250:]).float()
    steps = []  # the training weights after each optimizer step
    real_update = _train.WeightAverage.update

    def recording_update(self):
        steps.append([p.detach().clone() for p in self.params])
        real_update(self)

    monkeypatch.setattr(_train.WeightAverage, "update", recording_update)

    def run(decay, epochs=6):
        torch.manual_seed(0)
        net = LIBRANet(a.shape[1], b.shape[1], n_layers=1, n_nodes=8, latent_dim=2)
        start = [p.detach().clone() for p in net.parameters()]
        res = _train_pair(net, ma, mb, learning_rate=1e-2, max_epochs=epochs, ema_decay=decay)
        net.eval()
        with torch.no_grad():
            loss = float(torch.mean((net(x_val) - y_val) ** 2))
        return res, net, start, loss

    plain, plain_net, _, plain_loss = run(0.0)
    assert steps == []  # off: no average at all
    assert plain.best_loss == pytest.approx(plain_loss, rel=1e-5)
    res, net, start, loss = run(0.7)
    assert len(steps) == 6 * 5  # one update per optimizer step (5 steps per epoch)
    assert 5 * res.best_epoch > 4  # the best epoch is past the mean of the first 3 steps
    # the kept network is the moving average of the training weights at its best epoch ...
    average = start
    for t, weights in enumerate(steps[: 5 * res.best_epoch], start=1):
        w = max(0.3, 1 / t)  # the mean of the steps so far, then the moving average
        average = [(1 - w) * m + w * x for m, x in zip(average, weights)]
    for kept, expected in zip(net.parameters(), average):
        np.testing.assert_allclose(kept.detach().numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)
    # ... whose validation loss is the one recorded, and differs from the plain run's
    assert res.best_loss == pytest.approx(loss, rel=1e-5)
    assert res.best_loss != pytest.approx(plain.best_loss, rel=1e-4)


def test_ema_decay_is_a_recipe_argument_checked_before_work(cite):
    rna, adt = cite
    for preset in ("published", "0.1.0"):
        assert sclibra.LIBRA(preset=preset).fit_defaults["ema_decay"] == 0.0
    for bad in (1.0, -0.1, "x"):
        with pytest.raises(sclibra.SclibraError, match="ema_decay must be"):
            sclibra.LIBRA(n_models=1).fit(rna, adt, ema_decay=bad)
    preds = []
    for decay in (0.0, 0.5):  # LIBRA.fit passes it on: same seed, another model
        model = sclibra.LIBRA(**{**FAST, "seed": 0, "n_models": 1})
        model.fit(rna, adt, ema_decay=decay, max_epochs=2, progress=False)
        preds.append(model.predict(rna[:50]).X)
    assert not np.allclose(preds[0], preds[1])
