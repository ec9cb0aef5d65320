"""Binary spatio-temporal min-cut over a window of frames of one shot (Hong et al. 2017).

Nodes are the pixels of a TxHxW volume. Terminal edges carry the foreground log-odds; spatial
edges (4-connected) and temporal edges (pixel p of frame t to p + flow(p) in frame t+1) are
contrast-sensitive Potts terms. Callers build windows inside one shot, so temporal edges never
cross a shot boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import maxflow
import numpy as np


@dataclass(frozen=True)
class CutConfig:
    spatial_weight: float = (
        8.0  # Potts weight between 4-neighbours of equal colour (log-odds units)
    )
    temporal_weight: float = 6.0  # Potts weight along the flow between consecutive frames
    ignore_margin: float = 1.0  # |log-odds| below this near the cut boundary -> ignore
    ignore_band_px: int = 1  # half-width of the boundary band that may become ignore (working px)


def contrast_beta(images: np.ndarray) -> float:
    """TxHxWx3 -> beta = 1 / (2 mean squared neighbour colour difference) (GrabCut)."""
    x = images.astype(np.float32)
    d2 = np.concatenate([
        ((x[:, 1:] - x[:, :-1]) ** 2).sum(-1).ravel(),
        ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum(-1).ravel(),
    ])  # fmt: skip
    return 1.0 / (2.0 * max(float(d2.mean()), 1e-6))


def _spatial_weights(images: np.ndarray, beta: float, axis: int) -> np.ndarray:
    """TxHxW weight of the edge from each pixel to its next neighbour along axis (1=y, 2=x)."""
    x = images.astype(np.float32)
    d2 = ((np.roll(x, -1, axis=axis) - x) ** 2).sum(-1)
    return np.exp(-beta * d2).astype(np.float32)


def _temporal_edges(images: np.ndarray, flows: np.ndarray, ids: np.ndarray, beta: float):
    """Node pairs (i, j) and colour-similarity weights linking p in frame t to p + flow in t+1."""
    n_frames, height, width = ids.shape
    ys, xs = np.mgrid[0:height, 0:width]
    src, dst, wts = [], [], []
    for t in range(n_frames - 1):
        tx = np.rint(xs + flows[t, ..., 0]).astype(np.int64)
        ty = np.rint(ys + flows[t, ..., 1]).astype(np.int64)
        ok = (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
        a = images[t][ok].astype(np.float32)
        b = images[t + 1][ty[ok], tx[ok]].astype(np.float32)
        src.append(ids[t][ok])
        dst.append(ids[t + 1][ty[ok], tx[ok]])
        wts.append(np.exp(-beta * ((a - b) ** 2).sum(-1)))
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(wts)


def cut_volume(
    unary: np.ndarray, images: np.ndarray, flows: np.ndarray | None, cfg: CutConfig
) -> np.ndarray:
    """Minimum cut of a window.

    unary: TxHxW float32 foreground log-odds (positive favours foreground).
    images: TxHxWx3 uint8 RGB (same size). flows: (T-1)xHxWx2 float32 forward flow t -> t+1
    (x, y), or None for no temporal edges. Returns TxHxW bool foreground.
    """
    n_frames = unary.shape[0]
    beta = contrast_beta(images)
    graph = maxflow.Graph[float]()
    ids = graph.add_grid_nodes(unary.shape)
    for axis in (1, 2):
        structure = np.zeros((3, 3, 3))
        structure[(1, 2, 1) if axis == 1 else (1, 1, 2)] = 1.0
        weights = cfg.spatial_weight * _spatial_weights(images, beta, axis)
        graph.add_grid_edges(ids, weights=weights, structure=structure, symmetric=True)
    if flows is not None and n_frames > 1 and cfg.temporal_weight > 0:
        i, j, w = _temporal_edges(images, flows, ids, beta)
        w = (cfg.temporal_weight * w).astype(np.float64)
        graph.add_edges(i, j, w, w)
    unary = unary - 1e-4  # exact ties go to background (free nodes would join the source side)
    graph.add_grid_tedges(ids, np.maximum(unary, 0), np.maximum(-unary, 0))
    graph.maxflow()
    return ~graph.get_grid_segments(ids)


def uncertain_band(fg: np.ndarray, unary: np.ndarray, cfg: CutConfig) -> np.ndarray:
    """HxW bool cut and its HxW log-odds -> HxW bool pixels to mark 255 (ignore): within
    ignore_band_px of the cut boundary and with weak unaries."""
    size = 2 * cfg.ignore_band_px + 1
    kernel = np.ones((size, size), np.uint8)
    m = fg.astype(np.uint8)
    edge = cv2.dilate(m, kernel) != cv2.erode(m, kernel)
    return edge & (np.abs(unary) < cfg.ignore_margin)
