"""textgen.data.dataset: the StreamBatcher's contiguous, resumable, rank-split streams."""

import numpy as np

from textgen.data.dataset import StreamBatcher


def test_batcher_streams_are_contiguous_and_resumable():
    tokens = np.arange(1000, dtype=np.uint16)
    b = StreamBatcher(tokens, batch_size=4, seq_len=10)
    x, y, _ = b.next()
    assert x.shape == (4, 10) and (y == x + 1).all()
    assert list(x[:, 0]) == [0, 250, 500, 750]
    x2, _, _ = b.next()
    assert (x2[:, 0] == x[:, -1] + 1).all()  # the next chunk continues each stream
    pos = b.position()
    x3, _, _ = b.next()
    b2 = StreamBatcher(tokens, 4, 10)
    b2.seek(pos)
    assert (b2.next()[0] == x3).all()
    ranks = [StreamBatcher(tokens, 2, 10, rank=r, world=2).next()[0][:, 0] for r in (0, 1)]
    assert list(ranks[0]) == [0, 250] and list(ranks[1]) == [500, 750]
