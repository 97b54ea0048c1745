"""FileState: hashes, stale ranges, the digests-only form and first_difference."""

from __future__ import annotations

import hashlib

import pytest

from writepath.results import SHA256_LIMIT, FileState, pages_from_bytes

P = 4096


def content_of(size: int, placed: dict[int, bytes]) -> bytes:
    """A file of ``size`` zero bytes with ``placed`` byte strings at their offsets."""
    out = bytearray(size)
    for offset, data in placed.items():
        out[offset : offset + len(data)] = data
    return bytes(out[:size])


def state_of(content: bytes, stale: tuple[tuple[int, int], ...] = ()) -> FileState:
    return FileState(len(content), pages_from_bytes(content), stale)


CASES = {
    "empty": content_of(0, {}),
    "one byte": content_of(1, {0: b"\x07"}),
    "sparse middle": content_of(10 * P + 5, {3 * P + 17: b"abc" * 100}),
    "partial last page": content_of(5 * P + 100, {5 * P + 99: b"\x01"}),
    "data at page edge": content_of(4 * P, {P - 2: b"\x09\x08\x07\x06"}),
}


@pytest.mark.parametrize("name", CASES)
def test_sha256_streams_the_same_hash_as_the_whole_content(name: str) -> None:
    content = CASES[name]
    state = state_of(content)
    assert state.sha256() == hashlib.sha256(content).hexdigest()
    assert state.read(0, len(content) + 10) == content


def test_sha256_is_none_above_the_limit_and_digest_still_works() -> None:
    big = FileState(SHA256_LIMIT + 1, {3: b"\x01" * P})
    assert big.sha256() is None
    want = hashlib.sha256(b"%d;" % (SHA256_LIMIT + 1))
    want.update((3).to_bytes(8, "little") + b"\x01" * P)
    assert big.digest() == want.hexdigest()


def test_pages_may_be_views_and_hash_like_bytes() -> None:
    folio = bytearray(b"\x05" * (2 * P))
    view = memoryview(folio)
    shared = FileState(2 * P, {0: view[:P], 1: view[P:]})
    copied = FileState(2 * P, {0: b"\x05" * P, 1: b"\x05" * P})
    assert shared.sha256() == copied.sha256() == hashlib.sha256(bytes(folio)).hexdigest()
    assert shared.digest() == copied.digest()
    assert shared.first_difference(copied) is None
    folio[P + 9] = 6  # a view shares the folio: a change shows
    assert shared.first_difference(copied) == P + 9


def test_stale_bytes_read_and_hash_as_zero() -> None:
    content = content_of(3 * P, {0: b"\x01" * (3 * P)})
    stale = ((100, 200), (P - 10, P + 10))
    state = state_of(content, stale)
    masked = bytearray(content)
    for s, e in stale:
        masked[s:e] = bytes(e - s)
    assert state.read(0, 3 * P) == bytes(masked)
    assert state.sha256() == hashlib.sha256(bytes(masked)).hexdigest()
    assert state.digest() == state_of(bytes(masked)).digest()
    assert state.to_json()["stale"] == [[100, 200], [P - 10, P + 10]]


def test_a_page_that_is_all_stale_counts_as_a_zero_page() -> None:
    content = content_of(2 * P, {P: b"\x03" * P})
    state = state_of(content, ((P, 2 * P),))
    assert state.digest() == FileState(2 * P, {}).digest()
    assert state.sha256() == hashlib.sha256(bytes(2 * P)).hexdigest()


def test_to_json_keeps_the_keys_scripts_read() -> None:
    out = state_of(b"x" * 10).to_json()
    assert set(out) == {"size", "sha256", "digest", "stale"}
    assert out["size"] == 10 and out["stale"] == []
    assert out["sha256"] == hashlib.sha256(b"x" * 10).hexdigest()


def test_from_digests_stands_for_content_not_kept() -> None:
    real = state_of(content_of(2 * P, {P + 1: b"\x02"}))
    sha = real.sha256()
    assert sha is not None
    shipped = FileState.from_digests(2 * P, sha, real.digest(), ())
    assert shipped.pages is None
    assert shipped.sha256() == sha and shipped.digest() == real.digest()
    assert real.first_difference(shipped) is None
    assert real.difference(shipped) is None
    other = FileState.from_digests(2 * P, None, "0" * 64, ())
    assert real.first_difference(other) == 0
    assert real.difference(other) == "content differs (only digests known: no offset)"


@pytest.mark.parametrize(
    ("a", "b", "offset", "words"),
    [
        (content_of(3 * P, {5: b"\x01"}), content_of(3 * P, {5: b"\x01"}), None, None),
        (
            content_of(3 * P, {2 * P + 7: b"\x01"}),
            content_of(3 * P, {2 * P + 7: b"\x02"}),
            2 * P + 7,
            f"byte {2 * P + 7}: 01 vs 02",
        ),
        (content_of(3 * P, {}), content_of(3 * P, {P: b"\x04"}), P, f"byte {P}: 00 vs 04"),
        (content_of(P, {}), content_of(2 * P, {}), P, f"size {P} vs {2 * P}"),
    ],
)
def test_first_difference_of_content_and_size(
    a: bytes, b: bytes, offset: int | None, words: str | None
) -> None:
    assert state_of(a).first_difference(state_of(b)) == offset
    assert state_of(a).difference(state_of(b)) == words


def test_first_difference_compares_stale_ranges() -> None:
    content = content_of(2 * P, {})
    a = state_of(content, ((10, 20), (P, P + 50)))
    b = state_of(content, ((10, 20), (P + 5, P + 50)))
    assert a.first_difference(b) == P
    assert (
        a.difference(b)
        == f"stale ranges [[10, 20], [{P}, {P + 50}]] vs [[10, 20], [{P + 5}, {P + 50}]]"
    )
    assert a.first_difference(state_of(content, ((10, 20), (P, P + 50)))) is None
    assert state_of(content).first_difference(a) == 10


def test_pages_from_bytes_keeps_only_non_zero_pages_padded() -> None:
    pages = pages_from_bytes(content_of(2 * P + 3, {2 * P + 2: b"\x01"}), base_index=4)
    assert list(pages) == [6]
    assert pages[6] == b"\0\0\x01" + bytes(P - 3)
