"""Fixtures shared across test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices gain nothing from threads, and spinning threads stall on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
