"""Padding and packing of variable-length token sequences (tether.sequences.packing):
exact values, every token once and in order, deterministic placement, fill,
and a Packer that resumes exactly from its state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tether.bench.packing_fill import typical_lengths
from tether.sequences.packer import Packer
from tether.sequences.packing import METHODS, pack, pack_round, pad, pad_batch
from tether.wire.aligned import is_aligned
from tether.wire.ragged import Ragged

SCALE = 100_000  # a token's value: sequence id * SCALE + its place in the sequence


def _tokens(lengths, first_id: int = 0, dtype=np.int64) -> Ragged:
    """Rows whose tokens say which sequence they belong to and where."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ids = np.repeat(np.arange(first_id, first_id + len(lengths)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    values = ids * SCALE + (np.arange(int(lengths.sum())) - starts)
    return Ragged.from_lengths(values.astype(dtype), lengths)


def _round(lengths, first_id: int = 0) -> dict:
    lengths = np.asarray(lengths, dtype=np.int64)
    ids = np.arange(first_id, first_id + len(lengths), dtype=np.int64)
    return {"tokens": _tokens(lengths, first_id), "id": ids, "x": np.stack([ids, -ids], 1) * 0.5,
            "text": Ragged.from_rows([f"s{i}" for i in ids])}


def _mixed_lengths(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    lengths = rng.integers(1, 2 * length, count)
    lengths[rng.random(count) < 0.1] = 0
    lengths[rng.random(count) < 0.05] = length
    return lengths


# ----------------------------------------------------------------------------- pad


@pytest.mark.parametrize("dtype, pad_value", [(np.int32, 0), (np.int16, -1), (np.uint8, 255),
                                              (np.int64, 7)])
def test_pad_is_exact(dtype, pad_value) -> None:
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, 100, n).astype(dtype) for n in (0, 3, 8, 9, 20, 1, 8)]
    column = Ragged.from_rows(rows)
    out, lengths, truncated = pad(column, 8, pad_value)
    assert out.shape == (7, 8) and out.dtype == dtype and is_aligned(out)
    assert lengths.dtype == np.int32 and lengths.tolist() == [0, 3, 8, 8, 8, 1, 8]
    assert truncated == 2
    for row, got in zip(rows, out, strict=True):
        want = np.full(8, pad_value, dtype=dtype)
        want[:min(len(row), 8)] = row[:8]
        np.testing.assert_array_equal(got, want)


def test_pad_reads_a_slice_view() -> None:
    column = Ragged.from_rows([np.arange(n) + 10 * n for n in range(1, 9)])
    view = column[3:6]  # offsets start at 3 values in
    assert view.offsets[0] != 0
    out, lengths, truncated = pad(view, 5, -1)
    assert lengths.tolist() == [4, 5, 5] and truncated == 1
    np.testing.assert_array_equal(out, [[40, 41, 42, 43, -1], [50, 51, 52, 53, 54],
                                        [60, 61, 62, 63, 64]])


def test_pad_no_rows_and_length_one() -> None:
    out, lengths, truncated = pad(Ragged.from_rows([], dtype=np.int32), 4)
    assert out.shape == (0, 4) and lengths.shape == (0,) and truncated == 0
    out, lengths, truncated = pad(Ragged.from_rows([[5, 6], [], [7]]), 1, 9)
    assert out.tolist() == [[5], [9], [7]] and lengths.tolist() == [1, 0, 1] and truncated == 1
    with pytest.raises(ValueError):
        pad(Ragged.from_rows([[1]]), 0)


def test_pad_batch_replaces_named_columns_only() -> None:
    batch = {"tokens": Ragged.from_rows([[1, 2, 3], [4]], dtype=np.int32),
             "labels": Ragged.from_rows([[1], [2, 3, 4, 5, 6]], dtype=np.int32),
             "id": np.array([7, 8]), "text": Ragged.from_rows(["a", "bc"])}
    out, truncated = pad_batch(batch, {"tokens": 2, "labels": 4}, pad_value=-1)
    assert truncated == 2
    assert sorted(out) == ["id", "labels", "labels_length", "text", "tokens", "tokens_length"]
    assert out["tokens"].tolist() == [[1, 2], [4, -1]]
    assert out["tokens_length"].tolist() == [2, 1] and out["tokens_length"].dtype == np.int32
    assert out["labels"].tolist() == [[1, -1, -1, -1], [2, 3, 4, 5]]
    assert out["id"] is batch["id"] and out["text"] is batch["text"]
    with pytest.raises(TypeError):
        pad_batch(batch, {"id": 3})
    with pytest.raises(KeyError):
        pad_batch(batch, {"nope": 3})


# ----------------------------------------------------------------------------- pack


def _pieces(out: dict, column: str = "tokens") -> list[tuple[int, np.ndarray]]:
    """Every piece in reading order, as (row, tokens), checking the row layout:
    pieces back to back from slot 0, segment ids 1, 2, ... in order, positions
    0, 1, ... in each piece, padding (segment 0, position 0) only at the end."""
    packed = out[column]
    segments, positions = out[f"{column}_segment_ids"], out[f"{column}_positions"]
    assert packed.shape == segments.shape == positions.shape
    assert segments.dtype == positions.dtype == np.int32
    pieces = []
    for r in range(len(packed)):
        seg, pos = segments[r], positions[r]
        used = int(np.count_nonzero(seg))
        assert used > 0, "an empty row"
        assert (seg[:used] > 0).all() and (seg[used:] == 0).all() and (pos[used:] == 0).all()
        steps = np.diff(seg[:used])
        assert set(steps.tolist()) <= {0, 1} and seg[0] == 1
        for s in range(1, int(seg[used - 1]) + 1):
            where = np.flatnonzero(seg == s)
            np.testing.assert_array_equal(pos[where], np.arange(len(where)))
            pieces.append((r, packed[r, where]))
    return pieces


def _check_pack(batch: dict, out: dict, length: int, pad_value: int = 0) -> None:
    """Every token exactly once, sequences rebuilt in order, other columns from
    each row's first piece, padding where the segment id is 0."""
    lengths = batch["tokens"].lengths
    rows = out["tokens"].shape[0]
    assert out["tokens"].shape == (rows, length) and out["tokens"].dtype == batch["tokens"].dtype
    assert all(is_aligned(v) for v in out.values())
    assert (out["tokens"][out["tokens_segment_ids"] == 0] == pad_value).all()
    pieces = _pieces(out)
    rebuilt: dict[int, list[np.ndarray]] = {}
    first_of_row: dict[int, int] = {}
    for row, tokens in pieces:
        owners = np.unique(tokens // SCALE)
        assert len(owners) == 1, "a piece mixes sequences"
        seq = int(owners[0])
        first_of_row.setdefault(row, seq)
        rebuilt.setdefault(seq, []).append(tokens)
    ids = batch["id"].tolist()
    for i, n in enumerate(lengths.tolist()):
        if n == 0:
            assert ids[i] not in rebuilt
            continue
        parts = rebuilt.pop(ids[i])
        assert [len(p) for p in parts[:-1]] == [length] * (len(parts) - 1), "a piece not L long"
        assert len(parts) == -(-n // length)
        np.testing.assert_array_equal(np.concatenate(parts), batch["tokens"][i])
    assert not rebuilt
    assert sum(len(t) for _, t in pieces) == int(lengths.sum())
    assert sorted(first_of_row) == list(range(rows))
    firsts = [first_of_row[r] for r in range(rows)]
    assert out["id"].tolist() == firsts
    np.testing.assert_array_equal(out["x"], np.stack([firsts, [-f for f in firsts]], 1) * 0.5)
    assert "text" not in out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("length", [1, 7, 64])
def test_pack_places_every_token_once(method, length) -> None:
    rng = np.random.default_rng(length)
    for count in (1, 2, 50, 300):
        batch = _round(_mixed_lengths(rng, count, length), first_id=1000)
        out = pack(batch, "tokens", length, pad_value=-3, method=method)
        _check_pack(batch, out, length, pad_value=-3)


def test_pack_reads_a_slice_view_and_keeps_dtype() -> None:
    lengths = np.array([5, 0, 12, 3, 9, 1, 4])
    full = _round(lengths)
    batch = {"tokens": full["tokens"][2:6], "id": full["id"][2:6], "x": full["x"][2:6],
             "text": full["text"][2:6]}
    out = pack(batch, "tokens", 6)
    _check_pack(batch, out, 6)
    small = {"tokens": _tokens([3, 2, 6], dtype=np.int32).compact(), "id": np.arange(3),
             "x": np.zeros((3, 2)), "text": Ragged.from_rows(["a", "b", "c"])}
    small["tokens"] = Ragged(small["tokens"].values.astype(np.int32), small["tokens"].offsets)
    assert pack(small, "tokens", 6)["tokens"].dtype == np.int32


def test_pack_round_is_best_fit_decreasing() -> None:
    # Sorted: 7, 5, 4, 3, 3, 2. best fit: 7 -> a (room 3); 5 -> b (5); 4 -> b (1);
    # 3 -> a (0); 3 -> c (7); 2 -> c (5).
    placement = pack_round(np.array([3, 5, 4, 7, 2, 3]), 10)
    assert placement.rows == 3
    rows = {}
    for seq, row, col, seg in zip(placement.sequence, placement.row, placement.column,
                                  placement.segment, strict=True):
        rows.setdefault(int(row), []).append((int(seq), int(col), int(seg)))
    # Pieces in a row in sequence order; rows by their last piece's sequence.
    # Rows (a: 0 and 3, b: 1 and 2, c: 4 and 5) by their last piece's sequence: b, a, c.
    assert rows == {0: [(1, 0, 1), (2, 5, 2)], 1: [(0, 0, 1), (3, 3, 2)],
                    2: [(4, 0, 1), (5, 2, 2)]}
    first = pack_round(np.array([3, 5, 4, 7, 2, 3]), 10, "first_fit")
    assert first.rows == 3 and _groups(first) == [(0, 3), (1, 2), (4, 5)]


def _groups(placement) -> list[tuple[int, ...]]:
    return sorted(tuple(sorted(placement.sequence[placement.row == r].tolist()))
                  for r in range(placement.rows))


def test_best_fit_and_first_fit_part_where_they_should() -> None:
    # L=10, sorted 8, 6, 3, 1: 8 -> a (room 2), 6 -> b (4), 3 -> b (1). Then 1:
    # best fit takes the fullest row that fits (b, room 1), first fit the first (a).
    lengths = np.array([8, 3, 1, 6])
    assert _groups(pack_round(lengths, 10)) == [(0,), (1, 2, 3)]
    assert _groups(pack_round(lengths, 10, "first_fit")) == [(0, 2), (1, 3)]


def test_each_choice_is_the_methods() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        lengths = rng.integers(0, 25, rng.integers(1, 12))
        for method in METHODS:
            _check_placement(pack_round(lengths, 10, method), 10, method)


def _check_placement(placement, length: int, method: str) -> None:
    """Replays the placement in decreasing order and checks each choice was the
    method's: the fullest (best) or first-opened (first) open row that fits."""
    size, seq = placement.size, placement.sequence
    # Creation order of rows: the order in which their first-placed piece came.
    key = np.lexsort((placement.start // length, seq, -size))  # decreasing, ties original
    rooms: dict[int, int] = {}
    opened: list[int] = []
    for k in key.tolist():
        s, r = int(size[k]), int(placement.row[k])
        fits = [x for x in opened if rooms[x] >= s]
        if s == length or not fits:
            assert r not in rooms, "a piece went to an open row, none fitted it"
            rooms[r] = length
            opened.append(r)
        elif method == "best_fit":
            least = min(rooms[x] for x in fits)
            assert rooms[r] == least
            assert r == next(x for x in fits if rooms[x] == least)
        else:
            assert r == fits[0]
        rooms[r] -= s
        assert rooms[r] >= 0


def test_pack_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    batch = _round(_mixed_lengths(rng, 500, 32))
    for method in METHODS:
        a = pack(batch, "tokens", 32, method=method)
        b = pack(batch, "tokens", 32, method=method)
        assert sorted(a) == sorted(b)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
        p, q = pack_round(batch["tokens"].lengths, 32, method), \
            pack_round(batch["tokens"].lengths.copy(), 32, method)
        for name in ("sequence", "start", "size", "row", "column", "segment"):
            np.testing.assert_array_equal(getattr(p, name), getattr(q, name))


def test_rows_are_ordered_by_their_last_piece() -> None:
    rng = np.random.default_rng(4)
    lengths = _mixed_lengths(rng, 400, 16)
    placement = pack_round(lengths, 16)
    keys = placement.sequence * 1000 + placement.start // 16
    last = [int(keys[placement.row == r].max()) for r in range(placement.rows)]
    assert last == sorted(last)
    for r in range(placement.rows):  # in a row, pieces in original order
        assert np.all(np.diff(keys[placement.row == r]) > 0)
    # columns: back to back from 0, never past L
    ends = placement.column + placement.size
    assert ends.max() <= 16
    assert placement.split == int(np.count_nonzero(lengths > 16))
    assert placement.empty == int(np.count_nonzero(lengths == 0))
    assert placement.tokens == int(lengths.sum())


def test_fill_best_fit_against_first_fit_and_the_target() -> None:
    rng = np.random.default_rng(0)
    for length in (512, 2048):
        for mix in ("lognormal", "uniform", "around_L", "zipf"):
            rounds = [typical_lengths(mix, 256, length, rng) for _ in range(4)]
            best = [pack_round(r, length) for r in rounds]
            first = [pack_round(r, length, "first_fit") for r in rounds]
            assert sum(p.rows for p in best) <= sum(p.rows for p in first), mix
            for p in best:
                assert p.fill >= 0.85, (mix, length, p.fill)
        for _ in range(3):
            placement = pack_round(typical_lengths("lognormal", 1024, length, rng), length)
            assert placement.fill >= 0.85
            assert placement.rows < 1.05 * -(-placement.tokens // length)
    # a mixed set: many sizes, empty, exactly L, and split sequences
    lengths = _mixed_lengths(rng, 1024, 256)
    best, first = pack_round(lengths, 256), pack_round(lengths, 256, "first_fit")
    assert best.fill >= first.fill and best.fill >= 0.85


# ----------------------------------------------------------------------------- edge cases


def test_empty_sequences_carry_nothing_but_are_counted() -> None:
    batch = _round([0, 0, 3, 0])
    out = pack(batch, "tokens", 4)
    assert out["tokens"].tolist() == [[2 * SCALE, 2 * SCALE + 1, 2 * SCALE + 2, 0]]
    assert out["id"].tolist() == [2]
    placement = pack_round(batch["tokens"].lengths, 4)
    assert placement.empty == 3 and placement.pieces == 1
    only_empty = pack(_round([0, 0]), "tokens", 4)
    assert only_empty["tokens"].shape == (0, 4) and only_empty["id"].shape == (0,)
    assert only_empty["x"].shape == (0, 2)
    nothing = pack(_round([]), "tokens", 4)
    assert nothing["tokens"].shape == (0, 4)


def test_a_sequence_of_exactly_l_fills_one_row() -> None:
    batch = _round([4, 2, 4])
    out = pack(batch, "tokens", 4)
    _check_pack(batch, out, 4)
    assert out["tokens"].shape == (3, 4)
    placement = pack_round(batch["tokens"].lengths, 4)
    assert placement.split == 0
    assert out["tokens_segment_ids"].tolist() == [[1] * 4, [1, 1, 0, 0], [1] * 4]


def test_a_sequence_of_3l_plus_1_is_split_in_order() -> None:
    batch = _round([13])
    out = pack(batch, "tokens", 4)
    _check_pack(batch, out, 4)
    assert out["tokens"].tolist() == [list(range(0, 4)), list(range(4, 8)), list(range(8, 12)),
                                      [12, 0, 0, 0]]
    assert out["tokens_positions"].tolist() == [[0, 1, 2, 3]] * 3 + [[0, 0, 0, 0]]
    assert out["id"].tolist() == [0, 0, 0, 0]
    placement = pack_round([13], 4)
    assert placement.split == 1 and placement.pieces == 4
    assert placement.start.tolist() == [0, 4, 8, 12]
    # with others: the short last piece shares a row, after the full pieces
    batch = _round([2, 13, 3], first_id=5)
    _check_pack(batch, pack(batch, "tokens", 4), 4)


def test_length_one_puts_a_token_per_row() -> None:
    batch = _round([3, 0, 1, 2])
    out = pack(batch, "tokens", 1)
    _check_pack(batch, out, 1)
    assert out["tokens"][:, 0].tolist() == [0, 1, 2, 2 * SCALE, 3 * SCALE, 3 * SCALE + 1]
    assert (out["tokens_segment_ids"] == 1).all() and (out["tokens_positions"] == 0).all()


def test_pack_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError):
        pack_round([3], 4, method="worst_fit")
    with pytest.raises(ValueError):
        pack_round([-1], 4)
    with pytest.raises(ValueError):
        pack_round([3], 0)
    with pytest.raises(TypeError):
        pack({"tokens": np.zeros((2, 3))}, "tokens", 4)
    with pytest.raises(KeyError):
        pack(_round([1]), "labels", 4)


# ----------------------------------------------------------------------------- Packer


def _stream(rng: np.random.Generator, epochs: int, length: int) -> list[tuple]:
    """Rounds of every epoch: (token, epoch, batch), with sequence ids unique
    over the whole stream. Some rounds hold one sequence, one only empty ones."""
    out, next_id = [], 0
    for epoch in range(epochs):
        for i in range(int(rng.integers(3, 7))):
            count = [1, 0, int(rng.integers(2, 60))][min(i, 2)] if epoch == 0 else \
                int(rng.integers(1, 60))
            lengths = _mixed_lengths(rng, count, length)
            if epoch == 0 and i == 1:
                lengths = np.zeros(3, dtype=np.int64)  # only empty sequences
            token = {"epoch": epoch, "round": i, "at": len(out)}
            out.append((token, epoch, _round(lengths, first_id=next_id)))
            next_id += len(lengths)
    return out


def _from(stream: list[tuple], token) -> list[tuple]:
    """The stream re-opened at `token` (None: from the start)."""
    if token is None:
        return list(stream)
    token = json.loads(json.dumps(token))  # a token survives a JSON checkpoint
    return stream[token["at"]:]


def _run(packer: Packer) -> tuple[list[dict], list[dict]]:
    batches, states = [], []
    for batch in packer:
        batches.append(batch)
        states.append(packer.get_state())
    return batches, states


def _epoch_of(stream) -> dict[int, int]:
    return {int(i): epoch for _, epoch, batch in stream for i in batch["id"]}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed, length, batch_rows", [(0, 8, 4), (1, 16, 7), (2, 5, 1),
                                                      (3, 1, 16), (4, 32, 3)])
def test_packer_batches_are_exact_and_cover_every_token_once(seed, length, batch_rows,
                                                             method) -> None:
    rng = np.random.default_rng(seed)
    stream = _stream(rng, 3, length)
    packer = Packer(iter(stream), "tokens", length, batch_rows, pad_value=-1, method=method)
    assert packer.get_state() == {"round": None, "emitted": 0}
    batches, _ = _run(packer)
    epoch_of = _epoch_of(stream)
    seen: dict[int, list[int]] = {}
    for batch in batches:
        assert sorted(batch) == ["id", "tokens", "tokens_positions", "tokens_segment_ids", "x"]
        assert all(v.shape[0] == batch_rows and is_aligned(v) for v in batch.values())
        real = batch["tokens_segment_ids"][:, 0] != 0
        assert real.any()
        filler = ~real
        # fillers only at the end of a batch, all pad/zero
        assert not (filler[:-1] & real[1:]).any()
        assert (batch["tokens"][filler] == -1).all() and (batch["id"][filler] == 0).all()
        assert (batch["tokens_positions"][filler] == 0).all() and (batch["x"][filler] == 0).all()
        tokens = batch["tokens"][batch["tokens_segment_ids"] != 0]
        epochs = {epoch_of[int(i)] for i in tokens // SCALE}
        assert len(epochs) == 1, "a batch mixes epochs"
        for t in tokens.tolist():
            seen.setdefault(t, []).append(1)
    want = np.concatenate([b["tokens"].values for _, _, b in stream])
    assert sorted(seen) == sorted(want.tolist()) and all(len(v) == 1 for v in seen.values())
    s = packer.stats
    assert s.tokens == len(want) and s.slots == len(batches) * batch_rows * length
    assert s.rows == len(batches) * batch_rows and s.rounds == len(stream)
    assert s.fill == pytest.approx(s.tokens / s.slots) and s.padding == pytest.approx(1 - s.fill)
    assert s.sequences == sum(len(b["id"]) for _, _, b in stream)
    assert s.empty == sum(int((b["tokens"].lengths == 0).sum()) for _, _, b in stream)
    assert s.as_dict()["fill"] == s.fill


def _batch_epoch(batch: dict, epoch_of: dict[int, int]) -> int:
    return epoch_of[int(batch["tokens"][0, 0]) // SCALE]


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert sorted(x) == sorted(y)
        for name in x:
            np.testing.assert_array_equal(x[name], y[name])


@pytest.mark.parametrize("seed, length, batch_rows", [(0, 8, 4), (1, 16, 7), (2, 5, 1),
                                                      (3, 4, 5), (5, 32, 3)])
def test_packer_resumes_exactly(seed, length, batch_rows) -> None:
    """Stops after a few batches of each kind: inside a round, right at a round's
    end, at an epoch's end, and after the last batch."""
    rng = np.random.default_rng(seed)
    stream = _stream(rng, 3, length)
    full, states = _run(Packer(iter(stream), "tokens", length, batch_rows, pad_value=-1))
    assert len(full) > 3
    rows_of = {json.dumps(t): pack(b, "tokens", length)["tokens"].shape[0] for t, _, b in stream}
    epoch_of = _epoch_of(stream)
    stops: dict[str, list[int]] = {"inside": [], "round end": [], "epoch end": [], "last": []}
    for stop, state in enumerate(states, start=1):
        if stop == len(full):
            stops["last"].append(stop)
        elif _batch_epoch(full[stop - 1], epoch_of) != _batch_epoch(full[stop], epoch_of):
            stops["epoch end"].append(stop)
        elif state["emitted"] == rows_of[json.dumps(state["round"])]:
            stops["round end"].append(stop)
        else:
            stops["inside"].append(stop)
    # (right at a round's end: whenever it happens here, and always in the next test)
    assert stops["inside"] and stops["epoch end"] and stops["last"], stops
    if batch_rows == 1:
        assert stops["round end"]
    for kind, where in stops.items():
        for stop in where[:: max(1, len(where) // 4)]:
            state = json.loads(json.dumps(states[stop - 1]))  # through a JSON checkpoint
            resumed = Packer(iter(_from(stream, state["round"])), "tokens", length,
                             batch_rows, pad_value=-1, skip=state["emitted"])
            rest, rest_states = _run(resumed)
            _assert_same(full[:stop] + rest, full)
            assert rest_states == states[stop:], kind
            if not rest:  # resumed at the very end: nothing more, and the state holds
                assert resumed.get_state() == state


def test_packer_state_at_a_round_end_and_an_epoch_end() -> None:
    # L=4, sequences of exactly 4 tokens: one row each. batch_rows 4.
    # epoch 0: rounds of 3, 1 (a batch ends at its end), 5, 2 (epoch end: 3 rows + filler);
    # epoch 1: rounds of 4, 2.
    sizes = [(0, 3), (0, 1), (0, 5), (0, 2), (1, 4), (1, 2)]
    stream, next_id = [], 0
    for at, (epoch, count) in enumerate(sizes):
        stream.append(({"at": at}, epoch, _round([4] * count, first_id=next_id)))
        next_id += count
    full, states = _run(Packer(iter(stream), "tokens", 4, 4))
    assert states == [{"round": {"at": 1}, "emitted": 1}, {"round": {"at": 2}, "emitted": 4},
                      {"round": {"at": 3}, "emitted": 2}, {"round": {"at": 4}, "emitted": 4},
                      {"round": {"at": 5}, "emitted": 2}]
    assert [int((b["tokens_segment_ids"][:, 0] > 0).sum()) for b in full] == [4, 4, 3, 4, 2]
    for stop, state in enumerate(states, start=1):
        rest, _ = _run(Packer(iter(_from(stream, state["round"])), "tokens", 4, 4,
                              skip=state["emitted"]))
        _assert_same(full[:stop] + rest, full)


def test_packer_skip_must_fit_the_first_round() -> None:
    stream = [({"at": 0}, 0, _round([4, 4])), ({"at": 1}, 0, _round([4], first_id=2))]
    with pytest.raises(ValueError):
        list(Packer(iter(stream), "tokens", 4, 2, skip=3))
    with pytest.raises(ValueError):
        list(Packer(iter([]), "tokens", 4, 2, skip=1))
    assert list(Packer(iter([]), "tokens", 4, 2)) == []
    with pytest.raises(ValueError):
        Packer(iter(stream), "tokens", 4, 0)
    packer = Packer(iter(stream), "tokens", 4, 2, skip=2)
    assert packer.get_state() == {"round": None, "emitted": 2}
    out = list(packer)
    assert len(out) == 1 and out[0]["id"].tolist() == [2, 0]
    assert packer.get_state() == {"round": {"at": 1}, "emitted": 1}
    # a round skipped whole, then nothing: the state stays where it resumed
    packer = Packer(iter(stream[1:]), "tokens", 4, 2, skip=1)
    assert list(packer) == [] and packer.get_state() == {"round": {"at": 1}, "emitted": 1}


def test_packer_one_sequence_per_round() -> None:
    stream = [({"at": i}, i // 4, _round([3 + i], first_id=i)) for i in range(8)]
    full, states = _run(Packer(iter(stream), "tokens", 4, 3))
    tokens = np.concatenate([b["tokens"][b["tokens_segment_ids"] != 0] for b in full])
    want = np.concatenate([b["tokens"].values for _, _, b in stream])
    assert sorted(tokens.tolist()) == sorted(want.tolist())
    for stop, state in enumerate(states, start=1):
        rest, _ = _run(Packer(iter(_from(stream, state["round"])), "tokens", 4, 3,
                              skip=state["emitted"]))
        _assert_same(full[:stop] + rest, full)
