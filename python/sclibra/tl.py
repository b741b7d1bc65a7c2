"""Tools in the style of ``scanpy.tl``: functions that annotate an AnnData in place."""

from __future__ import annotations

from ._errors import SclibraError


def libra(
    adata,
    model,
    *,
    layer=None,
    obsm=None,
    key_added: str = "X_libra",
    fill_missing=False,
    copy=False,
):
    """Embed cells in a trained model's latent space and store it in ``adata.obsm[key_added]``.

    Parameters
    ----------
    adata
        AnnData of modality A (the model's input).
    model
        A trained :class:`sclibra.LIBRA`.
    layer, obsm
        Read modality A from ``layers[layer]`` or ``obsm[obsm]`` instead of ``X``.
    key_added
        ``obsm`` key to write.
    fill_missing
        Fill model features absent from ``adata`` with zeros (with a warning).
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``.
    """
    if type(adata).__name__ != "AnnData":
        raise SclibraError(f"sclibra.tl.libra needs an AnnData, got {type(adata).__name__}")
    from ._model import LIBRA

    if not isinstance(model, LIBRA):
        raise SclibraError(
            f"sclibra.tl.libra needs a sclibra.LIBRA model, got {type(model).__name__}; load a "
            "saved one with sclibra.LIBRA.load(path)"
        )
    latent = model.get_latent(adata, layer=layer, obsm=obsm, fill_missing=fill_missing)
    if copy:
        adata = adata.copy()
    adata.obsm[key_added] = latent
    adata.uns.setdefault("sclibra", {})[key_added] = {
        "params": model.config,
        "latent_dim": model.latent_dim,
    }
    return adata if copy else None
