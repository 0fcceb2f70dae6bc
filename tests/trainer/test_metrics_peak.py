"""MFU that can be trusted (issue 20.5): the CPU peak is re-measured when stale or implausible, is
labelled with its source, and MFU never exceeds 100%."""

from __future__ import annotations

import json
import time

import pytest
import torch

from dsllm.trainer import metrics


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSLLM_CACHE", str(tmp_path))
    monkeypatch.delenv("DSLLM_PEAK_FLOPS", raising=False)
    return tmp_path / "peak_flops.json"


def _plant(cache, flops, age_s: float = 0.0, legacy: bool = False):
    key = metrics.PeakFlops.__new__(metrics.PeakFlops)
    key.dtype = torch.float32
    entry = flops if legacy else {"flops": flops, "measured_at": time.time() - age_s}
    cache.write_text(json.dumps({key._key(): entry}))


def _independent_peak() -> float:
    """This host's fp32 matmul throughput, timed here with torch directly (not via dsllm)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 1024**3 / (time.perf_counter() - t)


@pytest.mark.parametrize("age_s, legacy", [(30 * 24 * 3600, False), (0, True)])
def test_stale_or_old_format_cache_is_remeasured(cache, age_s, legacy):
    _plant(cache, 1e3, age_s, legacy)  # as if measured once on a machine busy with other work
    peak = metrics.PeakFlops(torch.float32)
    assert peak.source.endswith("measured now")
    assert peak.value > _independent_peak() / 10
    assert json.loads(cache.read_text())[peak._key()]["flops"] == peak.value


def test_implausible_peak_is_remeasured_then_raised(cache):
    _plant(cache, 1e3)  # fresh, but far below anything this host does
    peak = metrics.PeakFlops(torch.float32)
    assert peak.source.endswith("cached") and peak.value == 1e3
    achieved = _independent_peak() / 100
    mfu = peak.mfu(achieved)
    assert peak.value > 1e3 and peak.source.endswith("measured now")
    assert 0 < mfu < 1 and mfu == pytest.approx(achieved / peak.value)
    # a step "faster" than any measurement cannot give MFU above 100%: the peak is raised to it
    assert peak.mfu(1e18) == 1.0 and "raised to the training step's own throughput" in peak.source


def test_documented_or_configured_peaks_are_labelled(cache, monkeypatch):
    monkeypatch.setenv("DSLLM_PEAK_FLOPS", "2e12")
    peak = metrics.PeakFlops(torch.bfloat16)
    assert (peak.value, peak.source) == (2e12, "DSLLM_PEAK_FLOPS")
    assert not cache.exists()  # nothing measured
