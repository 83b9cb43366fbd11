"""Tests for mcdose.resources (process memory measurement)."""

import numpy as np

from mcdose.resources import MB, PeakMemory, gpu_used_bytes, max_rss_bytes, rss_bytes


def test_peak_memory_sees_an_allocation_inside_the_block():
    with PeakMemory() as mem:
        block = np.ones(200 * MB // 8)  # 200 MB touched
        block.sum()
        del block
    result = mem.result()
    assert result["peak_host_MB"] >= result["start_host_MB"] + 150
    assert max_rss_bytes() >= rss_bytes() > 0


def test_gpu_memory_is_none_without_a_gpu_library_in_use():
    # this test process has no CUDA device; no GPU library is imported by the query
    with PeakMemory(gpu=True) as mem:
        pass
    assert "peak_gpu_MB" in mem.result()
    assert gpu_used_bytes() is None or gpu_used_bytes() >= 0
