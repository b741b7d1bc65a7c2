"""The R bridge hands the core's tqdm bars to an R callback, never to stderr."""

import contextlib
import io
import threading

from sclibra import _r_bridge


def test_bars_reach_the_callback_and_nothing_reaches_stderr():
    calls = []
    err = io.StringIO()
    with contextlib.redirect_stderr(err), _r_bridge._bars_to(lambda *a: calls.append(a)):
        from tqdm.auto import tqdm  # imported as the core does, while the call runs

        bar = tqdm(total=2, desc="aLIBRA trials")
        bar.update(2)
        bar.set_postfix(best_val_loss="0.5", refresh=False)
        bar.close()
        for _ in tqdm(range(3), desc="off", disable=True):
            pass
        worker = threading.Thread(target=lambda: tqdm(total=1, desc="thread").update(1))
        worker.start()
        worker.join()
    assert err.getvalue() == ""
    assert calls[0] == ("aLIBRA trials", 0, 2, "", False)
    assert calls[-1][:3] == ("aLIBRA trials", 2, 2)
    assert calls[-1][4] is True
    assert {c[0] for c in calls} == {"aLIBRA trials"}  # disabled and off-thread bars: nothing


def test_tqdm_is_restored_after_the_call():
    import tqdm.auto

    before = tqdm.auto.tqdm
    with _r_bridge._bars_to(lambda *a: None):
        assert tqdm.auto.tqdm is not before
    assert tqdm.auto.tqdm is before
    with _r_bridge._bars_to(None):
        assert tqdm.auto.tqdm is before
