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
    modality: str = "a",
    batch_size: int | None = None,
    copy=False,
):
    """Embed cells in a trained model's latent space and store it in ``adata.obsm[key_added]``.

    Parameters
    ----------
    adata
        AnnData of modality A (the model's input), or of modality B with ``modality="b"``.
    model
        A trained :class:`sclibra.LIBRA`.
    layer, obsm
        Read the modality from ``layers[layer]`` or ``obsm[obsm]`` instead of ``X``.
    key_added
        ``obsm`` key to write. An existing ``obsm[key_added]`` that ``sclibra.tl.libra`` did not
        write (no record in ``uns['sclibra']``: a PCA, a UMAP) is never replaced: the call
        stops before any work with an error.
    fill_missing
        Fill model features absent from ``adata`` with zeros (with a warning).
    modality
        ``"a"``: cells measured in modality A, through the model's encoder. ``"b"``: cells
        measured in modality B only, through the model's second network
        (:meth:`~sclibra.LIBRA.get_latent_from_b`; trained by
        :meth:`~sclibra.LIBRA.fit_b_encoder` or :func:`sclibra.metrics.nn_consistency`).
    batch_size
        Cells per batch (default: 1,024).
    copy
        Return a modified copy instead of writing to ``adata`` (in-memory data only: a backed
        AnnData cannot be copied without a file, so ``copy=True`` refuses one).

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
    if not isinstance(key_added, str) or not key_added:
        raise SclibraError(f"key_added must be a non-empty string, got {key_added!r}")
    if modality not in ("a", "b"):
        raise SclibraError(f"modality must be 'a' or 'b', got {modality!r}")
    if copy and adata.isbacked:
        raise SclibraError(
            f"copy=True needs in-memory data: the AnnData is backed by {adata.filename}; load it "
            "with adata.to_memory() first, or use copy=False to annotate it in place"
        )
    ours = adata.uns.get("sclibra", {})
    if key_added in adata.obsm and not (isinstance(ours, dict) and key_added in ours):
        raise SclibraError(
            f"adata.obsm[{key_added!r}] exists and sclibra did not write it; it is not replaced. "
            f"Choose another key_added, or remove it first: del adata.obsm[{key_added!r}]"
        )
    embed = model.get_latent if modality == "a" else model.get_latent_from_b
    latent = embed(adata, layer=layer, obsm=obsm, fill_missing=fill_missing, batch_size=batch_size)
    if copy:
        adata = adata.copy()
    adata.obsm[key_added] = latent
    adata.uns.setdefault("sclibra", {})[key_added] = {
        "params": model.config,
        "latent_dim": model.latent_dim,
        "modality": modality,
    }
    return adata if copy else None
