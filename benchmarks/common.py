"""Helpers shared by the benchmarks: scores and resource figures."""

import resource
import sys

import cv2
import numpy as np


def gaussian_ssim(a, b, mask=None):
    """SSIM on grey, 11x11 Gaussian window, sigma 1.5 (Wang et al. 2004)."""
    a = _grey(a)
    b = _grey(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map[mask].mean() if mask is not None else ssim_map.mean())


def psnr(a, b, mask=None):
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    mse = diff[mask].mean() if mask is not None else diff.mean()
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def _grey(img):
    img = img.astype(np.float64)
    if img.ndim == 3:
        img = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return img


def peak_rss_mb():
    """Peak resident set size of this process, in MB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / (1024.0 * 1024.0)
